//! ComfyUI's inpainting graphs against the real daemon, the tiny SD model, real HTTP and
//! `/ws`: a picture uploaded through `/upload/image` with a transparent left half (what
//! ComfyUI's mask editor saves), its LoadImage's MASK into a SetLatentNoiseMask or a
//! VAEEncodeForInpaint, or a black-and-white mask through LoadImageMask, comes back from
//! `/view` with its right half pixel for pixel and its left half redrawn. A LoadImage
//! without transparency (ComfyUI's mask would be empty, nothing redrawn) and bad inputs
//! are node errors naming node and input. Before, these nodes were refused as unknown.

use crate::common;

use common::compat::{models_dir, start_daemon};
use common::daemon::DaemonProc;
use image::{DynamicImage, RgbImage, Rgba, RgbaImage};
use serde_json::{Value, json};

use crate::comfy_compat::{connect, default_workflow, http, queue_prompt};
use crate::comfy_upscale::{get, messages_until_done, view};

/// The 64² picture the tests redraw a part of.
pub(crate) fn picture() -> RgbImage {
    image::open(common::fixture("reference/sd/init_64.png")).expect("init picture").to_rgb8()
}

/// `picture` uploaded through `/upload/image` as a PNG: the name LoadImage takes.
pub(crate) async fn upload(c: &reqwest::Client, d: &DaemonProc, name: &str, picture: DynamicImage) -> String {
    let mut png = Vec::new();
    picture.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("encode");
    let part = reqwest::multipart::Part::bytes(png).file_name(name.to_string()).mime_str("image/png");
    let form = reqwest::multipart::Form::new().part("image", part.expect("mime"));
    let up: Value =
        c.post(d.at("/upload/image")).multipart(form).send().await.expect("upload").json().await.expect("json");
    up["name"].as_str().unwrap_or_else(|| panic!("{up}")).to_string()
}

/// The picture with its left half transparent (its colours kept), as the mask editor saves it.
pub(crate) fn left_half_transparent() -> DynamicImage {
    let p = picture();
    DynamicImage::ImageRgba8(RgbaImage::from_fn(64, 64, |x, y| {
        let [r, g, b] = p.get_pixel(x, y).0;
        Rgba([r, g, b, if x < 32 { 0 } else { 255 }])
    }))
}

/// The default workflow sampling `latent` (nodes 10… added) at denoise 1, 4 steps.
pub(crate) fn inpaint_graph(nodes: &[(&str, Value)], latent: &str) -> Value {
    let mut g = default_workflow("tiny-sd", 4);
    g.as_object_mut().expect("graph").remove("5");
    for (id, node) in nodes {
        g[*id] = node.clone();
    }
    g["3"]["inputs"]["latent_image"] = json!([latent, 0]);
    g
}

pub(crate) fn load(name: &str) -> Value {
    json!({"class_type": "LoadImage", "inputs": {"image": name}})
}

/// Graph 1: LoadImage → VAEEncode → SetLatentNoiseMask(mask = its MASK) → KSampler.
pub(crate) fn noise_mask_graph(name: &str) -> Value {
    inpaint_graph(
        &[
            ("10", load(name)),
            ("11", json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}})),
            ("12", json!({"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["11", 0], "mask": ["10", 1]}})),
        ],
        "12",
    )
}

/// Graph 2: LoadImage → VAEEncodeForInpaint(pixels, mask = its MASK, grow_mask_by) → KSampler.
fn encode_for_inpaint_graph(name: &str, grow: Value) -> Value {
    let encode = json!({"class_type": "VAEEncodeForInpaint",
        "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["10", 1], "grow_mask_by": grow}});
    inpaint_graph(&[("10", load(name)), ("11", encode)], "11")
}

/// Runs `graph` through `/prompt` and `/ws`: its job's view and the SaveImage's picture from `/view`.
pub(crate) async fn run(c: &reqwest::Client, d: &DaemonProc, graph: Value) -> (Value, RgbImage) {
    let mut socket = connect(d, "inpaint").await;
    let id = queue_prompt(c, d, json!({"prompt": graph, "client_id": "inpaint"})).await;
    let messages = messages_until_done(&mut socket, &id).await;
    let saved = messages
        .iter()
        .find(|m| m["type"] == "executed" && m["data"]["node"] == "9")
        .unwrap_or_else(|| panic!("no SaveImage output: {messages:?}"));
    let out = view(c, d, &saved["data"]["output"]["images"][0]).await.to_rgb8();
    let job = get(c, d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    (job, out)
}

/// The right half, past the mask's edge grown by `grown` pixels, is the picture's own, pixel
/// for pixel; the left half (away from the soft edge) is redrawn, and so is the grown band.
fn only_the_left_half_redrawn(out: &RgbImage, grown: u32, what: &str) {
    let input = picture();
    let differing = |xs: std::ops::Range<u32>| {
        input.enumerate_pixels().filter(|(x, y, p)| xs.contains(x) && out.get_pixel(*x, *y) != *p).count()
    };
    assert_eq!(differing(32 + grown..64), 0, "{what}: the kept half is the picture's own");
    assert!(grown == 0 || differing(32..32 + grown) > 0, "{what}: the mask grew past its edge");
    assert!(differing(0..26) > 26 * 64 / 2, "{what}: the masked half is redrawn ({} px)", differing(0..26));
}

/// `/prompt`'s refusal of `graph`: the node error of `node`.
pub(crate) async fn refused(c: &reqwest::Client, d: &DaemonProc, graph: Value, node: &str) -> Value {
    let resp = c.post(d.at("/prompt")).json(&json!({"prompt": graph})).send().await.expect("post");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, 400, "{body}");
    body["node_errors"][node]["errors"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comfyuis_inpainting_graphs_redraw_only_the_masked_part() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let masked = upload(&c, &d, "door.png", left_half_transparent()).await;

    // 1. SetLatentNoiseMask with the LoadImage's own MASK: the upload is picture and mask.
    let (job, out) = run(&c, &d, noise_mask_graph(&masked)).await;
    assert_eq!(job["params"]["mask"], job["params"]["init_image"], "{job}");
    assert_eq!((&job["params"]["strength"], job["params"].get("mask_grow")), (&json!(1.0), None), "{job}");
    only_the_left_half_redrawn(&out, 0, "SetLatentNoiseMask");

    // 2. VAEEncodeForInpaint: its grow_mask_by of 6 reaches 3 pixels past the mask's edge.
    let (job, out) = run(&c, &d, encode_for_inpaint_graph(&masked, json!(6))).await;
    assert_eq!((&job["params"]["mask"], &job["params"]["mask_grow"]), (&job["params"]["init_image"], &json!(3)));
    only_the_left_half_redrawn(&out, 3, "VAEEncodeForInpaint");

    // 3. A black-and-white mask (white redraws) through LoadImageMask's red channel.
    let opaque = upload(&c, &d, "door-opaque.png", DynamicImage::ImageRgb8(picture())).await;
    let bw = RgbImage::from_fn(64, 64, |x, _| image::Rgb([if x < 32 { 255 } else { 0 }; 3]));
    let bw = upload(&c, &d, "mask.png", DynamicImage::ImageRgb8(bw)).await;
    let mut g = noise_mask_graph(&opaque);
    g["13"] = json!({"class_type": "LoadImageMask", "inputs": {"image": bw, "channel": "red"}});
    g["12"]["inputs"]["mask"] = json!(["13", 0]);
    let (job, out) = run(&c, &d, g.clone()).await;
    assert_ne!(job["params"]["mask"], job["params"]["init_image"], "{job}");
    only_the_left_half_redrawn(&out, 0, "LoadImageMask");

    // A LoadImage without transparency has an empty MASK in ComfyUI (nothing redrawn): refused.
    let err = refused(&c, &d, noise_mask_graph(&opaque), "10").await;
    assert_eq!((&err["type"], &err["extra_info"]["input_name"]), (&json!("custom_validation_failed"), &json!("image")));
    assert!(err["message"].as_str().is_some_and(|m| m.contains("no transparent pixels")), "{err}");
    // The alpha channel of the same opaque mask: empty too (a colour channel of a coloured
    // picture is worked out: comfy_masks).
    g["13"]["inputs"]["channel"] = json!("alpha");
    let err = refused(&c, &d, g.clone(), "13").await;
    assert_eq!(err["extra_info"]["input_name"], "image", "{err}");
    // A mask of another size than the picture: the kind's refusal, at the mask's input.
    let small = RgbImage::from_pixel(32, 32, image::Rgb([255; 3]));
    g["13"]["inputs"] =
        json!({"image": upload(&c, &d, "small.png", DynamicImage::ImageRgb8(small)).await, "channel": "red"});
    let err = refused(&c, &d, g, "12").await;
    assert_eq!(err["extra_info"]["input_name"], "mask", "{err}");

    // grow_mask_by past ComfyUI's 64, a mask from a picture's IMAGE, a mask node reelbox lacks.
    let err = refused(&c, &d, encode_for_inpaint_graph(&masked, json!(65)), "11").await;
    assert_eq!(
        (&err["type"], &err["extra_info"]["input_name"]),
        (&json!("value_bigger_than_max"), &json!("grow_mask_by"))
    );
    let mut g = noise_mask_graph(&masked);
    g["12"]["inputs"]["mask"] = json!(["10", 0]);
    let err = refused(&c, &d, g.clone(), "12").await;
    assert_eq!((&err["type"], &err["extra_info"]["input_name"]), (&json!("return_type_mismatch"), &json!("mask")));
    // KJNodes' GrowMaskWithBlur, a custom node.
    g["13"] = json!({"class_type": "GrowMaskWithBlur", "inputs": {"mask": ["10", 1], "expand": 8}});
    g["12"]["inputs"]["mask"] = json!(["13", 0]);
    assert_eq!(refused(&c, &d, g, "13").await["type"], "missing_node_type");

    // A masked first pass sampled again (the hires fix): refused at the mask's node.
    let mut g = noise_mask_graph(&masked);
    g["13"] = json!({"class_type": "KSampler", "inputs": g["3"]["inputs"].clone()});
    g["13"]["inputs"]["latent_image"] = json!(["3", 0]);
    g["13"]["inputs"]["denoise"] = json!(0.5);
    g["8"]["inputs"]["samples"] = json!(["13", 0]);
    let err = refused(&c, &d, g, "12").await;
    assert_eq!(err["type"], "unsupported_graph", "{err}");

    // /object_info lists the nodes with ComfyUI's inputs.
    let info = get(&c, &d, "/object_info").await;
    assert_eq!(info["VAEEncodeForInpaint"]["input"]["required"]["grow_mask_by"][1]["default"], 6);
    assert_eq!(info["LoadImageMask"]["input"]["required"]["channel"][0], json!(["alpha", "red", "green", "blue"]));
    assert_eq!(info["SetLatentNoiseMask"]["output"], json!(["LATENT"]));
}
