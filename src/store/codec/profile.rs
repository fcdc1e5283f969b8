//! Profile records' older layouts and how each is read now (a version per change: v1 before
//! a profile named its picture model, v2 before it named its lip-sync and upscale models).

#[cfg(test)]
use serde::Serialize;

use super::{CodecError, Record, decode_old, no_migration};
use crate::store::records::{Millis, Profile, Style, Voice};

/// `Profile` as record versions 1 and 2 wrote it, `S` being its version's `Style` layout
/// ([`StyleV1`], [`StyleV2`]). Frozen, like `ApiKeyV1`: bincode reads fields by position.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ProfileOld<S> {
    id: ulid::Ulid,
    owner: String,
    name: String,
    portrait: Option<ulid::Ulid>,
    face_box: Option<[u32; 4]>,
    voice_sample: Option<ulid::Ulid>,
    // The live struct, unchanged since v1: a change to `Voice`'s layout needs a `VoiceV1` here.
    voice: Voice,
    style: S,
    created_at: Millis,
}

/// `Style` as profile record version 1 wrote it.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StyleV1 {
    prompt_prefix: String,
    negative_prompt: String,
    preset: Option<String>,
}

/// `Style` as profile record version 2 wrote it: version 1's fields, then the picture model
/// (bincode lays a nested struct's fields out in place, so this is the flat v2 layout).
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StyleV2 {
    v1: StyleV1,
    image_model: Option<String>,
}

impl Record for Profile {
    const VERSION: u8 = 3;
    fn migrate(version: u8, payload: &[u8]) -> Result<Self, CodecError> {
        let old: ProfileOld<StyleV2> = match version {
            1 => {
                let v1: ProfileOld<StyleV1> = decode_old(payload)?;
                // Profiles from before picture models leave the model to the render's default.
                v1.map_style(|v1| StyleV2 { v1, image_model: None })
            }
            2 => decode_old(payload)?,
            other => return Err(no_migration("profile", other)),
        };
        // Profiles from before lip-sync and upscale models leave them to the box's defaults.
        let StyleV2 { v1, image_model } = old.style;
        let style = Style {
            prompt_prefix: v1.prompt_prefix,
            negative_prompt: v1.negative_prompt,
            preset: v1.preset,
            image_model,
            lipsync_model: None,
            upscale_model: None,
        };
        Ok(Profile {
            id: old.id,
            owner: old.owner,
            name: old.name,
            portrait: old.portrait,
            face_box: old.face_box,
            voice_sample: old.voice_sample,
            voice: old.voice,
            style,
            created_at: old.created_at,
        })
    }
}

impl<S> ProfileOld<S> {
    /// The same profile with its style in the next version's layout.
    fn map_style<T>(self, next: impl FnOnce(S) -> T) -> ProfileOld<T> {
        ProfileOld {
            id: self.id,
            owner: self.owner,
            name: self.name,
            portrait: self.portrait,
            face_box: self.face_box,
            voice_sample: self.voice_sample,
            voice: self.voice,
            style: next(self.style),
            created_at: self.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{bincode_config, decode, encode};
    use super::*;

    fn voice() -> Voice {
        Voice { model: "joe".into(), speaker: None, length_scale: Some(1.5), noise_scale: None, noise_w: None }
    }

    /// `old` written with version byte `version`, as the reelbox of that version stored it.
    fn stored<S: Serialize>(version: u8, old: &ProfileOld<S>) -> Vec<u8> {
        let mut bytes = vec![version];
        bytes.extend(bincode::serde::encode_to_vec(old, bincode_config()).expect("encode old layout"));
        bytes
    }

    fn old<S>(style: S) -> ProfileOld<S> {
        ProfileOld {
            id: ulid::Ulid::nil(),
            owner: "local".into(),
            name: "anna".into(),
            portrait: None,
            face_box: Some([1, 2, 3, 4]),
            voice_sample: None,
            voice: voice(),
            style,
            created_at: 5,
        }
    }

    fn style_v1() -> StyleV1 {
        StyleV1 { prompt_prefix: "oil".into(), negative_prompt: "blur".into(), preset: Some("fast".into()) }
    }

    #[test]
    fn version_1_profiles_migrate_without_any_model() {
        let p = decode::<Profile>(&stored(1, &old(style_v1()))).expect("v1 migrates");
        let style = Style {
            prompt_prefix: "oil".into(),
            negative_prompt: "blur".into(),
            preset: Some("fast".into()),
            image_model: None,
            lipsync_model: None,
            upscale_model: None,
        };
        assert_eq!(
            (p.name.as_str(), p.face_box, &p.voice, &p.style, p.created_at),
            ("anna", Some([1, 2, 3, 4]), &voice(), &style, 5)
        );
    }

    #[test]
    fn version_2_profiles_keep_their_picture_model_and_have_no_lipsync_or_upscale_model() {
        let v2 = old(StyleV2 { v1: style_v1(), image_model: Some("tiny-sd-styled".into()) });
        let p = decode::<Profile>(&stored(2, &v2)).expect("v2 migrates");
        assert_eq!(p.style.image_model.as_deref(), Some("tiny-sd-styled"));
        assert_eq!((p.style.lipsync_model.as_deref(), p.style.upscale_model.as_deref()), (None, None));
        assert_eq!((p.style.prompt_prefix.as_str(), p.style.preset.as_deref()), ("oil", Some("fast")));
        let new = Profile {
            style: Style { lipsync_model: Some("wav2lip_gan".into()), upscale_model: Some("x4".into()), ..p.style },
            ..p
        };
        let bytes = encode(&new);
        assert_eq!(bytes[0], 3);
        assert_eq!(decode::<Profile>(&bytes).expect("v3 round-trips"), new);
        assert!(matches!(decode::<Profile>(&[4, 0]), Err(CodecError::TooNew { found: 4, max: 3 })));
    }
}
