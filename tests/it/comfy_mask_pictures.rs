//! ComfyUI's mask nodes that read a mask from a picture or make one a picture, against the
//! real daemon, the tiny SD model, real HTTP and `/ws`: ImageColorToMask of a mask painted
//! red on white redraws exactly the red part, as the native job sent the same mask file
//! does; CropMask inside a MaskComposite, MaskToImage → (ImageInvert →) ImageToMask are
//! worked out by ComfyUI's arithmetic; a PreviewImage of a MaskToImage does not stop the
//! job. Bad inputs are node errors naming node and input. Before, each of these nodes was
//! refused as unknown (`missing_node_type`).

use crate::common;

use common::compat::{models_dir, start_daemon};
use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use serde_json::{Value, json};

use crate::comfy_compat::http;
use crate::comfy_inpaint::{left_half_transparent, load, picture, refused, run, upload};
use crate::comfy_masks::{differing, grey_artifact, masked_graph, native, node};
use crate::comfy_upscale::get;

/// Whether (x, y) lies in the box `[x0, x1) × [y0, y1)`.
fn inside((x0, y0, x1, y1): (u32, u32, u32, u32), x: u32, y: u32) -> bool {
    (x0..x1).contains(&x) && (y0..y1).contains(&y)
}

/// How many pixels of `out` differ from the picture, inside or outside `area`.
fn differing_in(out: &RgbImage, area: (u32, u32, u32, u32), want_inside: bool) -> usize {
    let changed = |(x, y, p): &(u32, u32, &Rgb<u8>)| out.get_pixel(*x, *y) != *p;
    picture().enumerate_pixels().filter(|(x, y, _)| inside(area, *x, *y) == want_inside).filter(changed).count()
}

/// A grey picture white in `area`, black elsewhere, as a PNG.
fn grey_png(area: (u32, u32, u32, u32)) -> Vec<u8> {
    let grey = GrayImage::from_fn(64, 64, |x, y| Luma([if inside(area, x, y) { 255 } else { 0 }]));
    let mut png = Vec::new();
    DynamicImage::ImageLuma8(grey).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("png");
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mask_painted_red_redraws_exactly_the_red_part_as_the_native_job_does() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let opaque = upload(&c, &d, "door.png", DynamicImage::ImageRgb8(picture())).await;
    // Red painted on white, and beside it a red one shade off, which is not the colour.
    let red = (8, 16, 40, 48);
    let painted = RgbImage::from_fn(64, 64, |x, y| match () {
        _ if inside(red, x, y) => Rgb([255, 0, 0]),
        _ if inside((48, 16, 56, 48), x, y) => Rgb([254, 0, 0]),
        _ => Rgb([255, 255, 255]),
    });
    let painted = upload(&c, &d, "mask.png", DynamicImage::ImageRgb8(painted)).await;
    let nodes = [
        ("13", load(&painted)),
        ("14", node("ImageColorToMask", json!({"image": ["13", 0], "color": 0xFF0000}))),
        // The mask previewed: left out, the job runs.
        ("19", node("MaskToImage", json!({"mask": ["14", 0]}))),
        ("20", node("PreviewImage", json!({"images": ["19", 0]}))),
    ];
    let (job, out) = run(&c, &d, masked_graph(&opaque, &nodes, json!(["14", 0]))).await;
    let mask = job["params"]["mask"].as_str().unwrap_or_else(|| panic!("{job}")).to_string();
    let kept = grey_artifact(&c, &d, &mask).await;
    assert!(kept.enumerate_pixels().all(|(x, y, p)| p.0[0] == if inside(red, x, y) { 255 } else { 0 }), "the red part");
    assert_eq!(differing_in(&out, red, false), 0, "outside the red part the picture's own, pixel for pixel");
    assert!(differing_in(&out, (14, 22, 34, 42), true) > 20 * 20 / 2, "the red part redrawn");
    // The same mask as a file to the native route: the same pixels.
    let sent =
        common::api::upload(&d, None, "red-part.png", grey_png(red)).await["id"].as_str().expect("id").to_string();
    assert!(native(&c, &d, &job, &sent, json!({})).await == out, "the native job with the mask file");
    let history = get(&c, &d, &format!("/history/{}", job["id"].as_str().expect("id"))).await;
    let outputs = history.as_object().and_then(|h| h.values().next()).map(|e| e["outputs"].clone());
    let outputs = outputs.unwrap_or_else(|| panic!("{history}"));
    assert!(outputs["9"]["images"].is_array() && outputs.get("20").is_none(), "{outputs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cropped_mask_composited_then_through_a_picture_and_back_redraws_its_band() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let door = upload(&c, &d, "door.png", left_half_transparent()).await;
    let opaque = upload(&c, &d, "door-opaque.png", DynamicImage::ImageRgb8(picture())).await;
    // 16 columns of the door's MASK (all 1: its transparent half) added onto nothing at x 40,
    // made a picture and read back by its green.
    let band = |to_mask: Vec<(&'static str, Value)>| {
        let mut nodes = vec![
            ("16", load(&door)),
            ("17", node("CropMask", json!({"mask": ["16", 1], "x": 16, "y": 0, "width": 16, "height": 64}))),
            ("13", node("SolidMask", json!({"value": 0.0, "width": 64, "height": 64}))),
            (
                "15",
                node(
                    "MaskComposite",
                    json!({"destination": ["13", 0], "source": ["17", 0], "x": 40, "y": 0, "operation": "add"}),
                ),
            ),
            ("18", node("MaskToImage", json!({"mask": ["15", 0]}))),
        ];
        nodes.extend(to_mask);
        masked_graph(&opaque, &nodes, json!(["19", 0]))
    };
    let (job, out) =
        run(&c, &d, band(vec![("19", node("ImageToMask", json!({"image": ["18", 0], "channel": "green"})))])).await;
    let mask = job["params"]["mask"].as_str().unwrap_or_else(|| panic!("{job}")).to_string();
    let kept = grey_artifact(&c, &d, &mask).await;
    let in_band = |x: u32| (40..56).contains(&x);
    assert!(kept.enumerate_pixels().all(|(x, _, p)| p.0[0] == if in_band(x) { 255 } else { 0 }), "the band");
    assert_eq!(differing(&out, 0..40) + differing(&out, 56..64), 0, "outside the band the picture's own");
    assert!(differing(&out, 44..52) > 4 * 64, "the band redrawn");

    // ImageInvert between: everything but the band redrawn.
    let inverted = vec![
        ("20", node("ImageInvert", json!({"image": ["18", 0]}))),
        ("19", node("ImageToMask", json!({"image": ["20", 0], "channel": "red"}))),
    ];
    let (_, out) = run(&c, &d, band(inverted)).await;
    assert_eq!(differing(&out, 40..56), 0, "the band kept");
    assert!(differing(&out, 0..34) > 34 * 64 / 2, "the rest redrawn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_picture_mask_nodes_are_listed_and_bad_inputs_name_their_node_and_input() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();

    let info = get(&c, &d, "/object_info").await;
    let color = &info["ImageColorToMask"];
    assert_eq!(color["input_order"]["required"], json!(["image", "color"]));
    assert_eq!(
        color["input"]["required"]["color"],
        json!(["INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}])
    );
    assert_eq!((&color["output"], &color["category"]), (&json!(["MASK"]), &json!("mask")));
    let crop = &info["CropMask"];
    assert_eq!(crop["input_order"]["required"], json!(["mask", "x", "y", "width", "height"]));
    assert_eq!(crop["input"]["required"]["width"], json!(["INT", {"default": 512, "min": 1, "max": 2048, "step": 1}]));
    assert_eq!(crop["python_module"], "comfy_extras.nodes_mask");
    let to_image = &info["MaskToImage"];
    assert_eq!((&to_image["display_name"], &to_image["output"]), (&json!("Convert Mask to Image"), &json!(["IMAGE"])));
    assert_eq!(to_image["input"]["required"], json!({"mask": ["MASK"]}));
    let invert = &info["ImageInvert"];
    assert_eq!((&invert["display_name"], &invert["category"]), (&json!("Invert Image"), &json!("image")));
    assert_eq!((&invert["python_module"], &invert["output"]), (&json!("nodes"), &json!(["IMAGE"])));

    let door = upload(&c, &d, "door.png", left_half_transparent()).await;
    let type_and_input = |err: &Value| (err["type"].clone(), err["extra_info"]["input_name"].clone());
    // A colour past 0xFFFFFF.
    let nodes = [("14", node("ImageColorToMask", json!({"image": ["10", 0], "color": 0x1000000})))];
    let err = refused(&c, &d, masked_graph(&door, &nodes, json!(["14", 0])), "14").await;
    assert_eq!(type_and_input(&err), (json!("value_bigger_than_max"), json!("color")), "{err}");
    // Crops whose corner is past the 64×64 mask's edge: nothing left.
    for (input, x, y) in [("x", 64, 0), ("y", 0, 70)] {
        let crop = node("CropMask", json!({"mask": ["10", 1], "x": x, "y": y, "width": 64, "height": 64}));
        let err = refused(&c, &d, masked_graph(&door, &[("17", crop)], json!(["17", 0])), "17").await;
        assert_eq!(type_and_input(&err), (json!("custom_validation_failed"), json!(input)), "{err}");
        assert!(err["message"].as_str().is_some_and(|m| m.contains("past the")), "{err}");
    }
    // A crop narrower than the picture straight to the sampler: at its width.
    let crop = node("CropMask", json!({"mask": ["10", 1], "x": 0, "y": 0, "width": 32, "height": 64}));
    let err = refused(&c, &d, masked_graph(&door, &[("17", crop)], json!(["17", 0])), "17").await;
    assert_eq!(type_and_input(&err), (json!("custom_validation_failed"), json!("width")), "{err}");
    assert!(err["message"].as_str().is_some_and(|m| m.contains("32×64")), "{err}");
    // A colour read from a resized picture, which reelbox does not work out for a mask.
    let nodes = [
        (
            "15",
            node(
                "ImageScale",
                json!({"image": ["10", 0], "upscale_method": "nearest-exact", "width": 64, "height": 64, "crop": "disabled"}),
            ),
        ),
        ("14", node("ImageColorToMask", json!({"image": ["15", 0], "color": 0}))),
    ];
    let err = refused(&c, &d, masked_graph(&door, &nodes, json!(["14", 0])), "14").await;
    assert_eq!(type_and_input(&err), (json!("unsupported_graph"), json!("image")), "{err}");
    // Alpha of a MaskToImage's picture, which is RGB.
    let nodes = [
        ("18", node("MaskToImage", json!({"mask": ["10", 1]}))),
        ("19", node("ImageToMask", json!({"image": ["18", 0], "channel": "alpha"}))),
    ];
    let err = refused(&c, &d, masked_graph(&door, &nodes, json!(["19", 0])), "19").await;
    assert_eq!(type_and_input(&err), (json!("custom_validation_failed"), json!("channel")), "{err}");
}
