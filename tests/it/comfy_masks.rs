//! ComfyUI's mask nodes between a MASK's loader and SetLatentNoiseMask, against the real
//! daemon, the tiny SD model, real HTTP and `/ws`: InvertMask, GrowMask, ThresholdMask,
//! SolidMask, MaskComposite and a LoadImageMask's colour channel are worked out by ComfyUI's
//! arithmetic into a mask the job keeps as an upload, and the job's picture is the native
//! masked job's with that mask, pixel for pixel. Bad inputs are node errors naming node and
//! input; working a large mask out holds up no other request. Before, every one of these
//! graphs was refused (`unsupported_graph`, or `missing_node_type` for the nodes).

use crate::common;

use std::time::{Duration, Instant};

use common::compat::{models_dir, start_daemon, start_daemon_with};
use common::daemon::{DaemonProc, is_final, wait_job};
use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use serde_json::{Value, json};

use crate::comfy_compat::http;
use crate::comfy_inpaint::{inpaint_graph, left_half_transparent, load, picture, refused, run, upload};
use crate::comfy_upscale::get;

/// LoadImage `10` → VAEEncode `11` → SetLatentNoiseMask `12`, its mask node `mask_from`'s
/// (the `nodes` added).
pub(crate) fn masked_graph(name: &str, nodes: &[(&str, Value)], mask_from: Value) -> Value {
    let mut all = vec![
        ("10", load(name)),
        ("11", json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}})),
        ("12", json!({"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["11", 0], "mask": mask_from}})),
    ];
    all.extend(nodes.iter().cloned());
    inpaint_graph(&all, "12")
}

pub(crate) fn node(class_type: &str, inputs: Value) -> Value {
    json!({"class_type": class_type, "inputs": inputs})
}

/// How many pixels of columns `xs` differ between the picture and `out`.
pub(crate) fn differing(out: &RgbImage, xs: std::ops::Range<u32>) -> usize {
    picture().enumerate_pixels().filter(|(x, y, p)| xs.contains(x) && out.get_pixel(*x, *y) != *p).count()
}

/// The grey picture an artifact holds (a mask the prompt kept).
pub(crate) async fn grey_artifact(c: &reqwest::Client, d: &DaemonProc, id: &str) -> GrayImage {
    let bytes = c.get(d.at(&format!("/api/v1/artifacts/{id}"))).send().await.expect("get").bytes().await.expect("body");
    image::load_from_memory(&bytes).expect("a picture").to_luma8()
}

/// The native `image` job of the ComfyUI job `comfy`'s parameters with `mask` (+ `more`):
/// its picture.
pub(crate) async fn native(c: &reqwest::Client, d: &DaemonProc, comfy: &Value, mask: &str, more: Value) -> RgbImage {
    let p = &comfy["params"];
    let mut body = json!({"mask": mask, "preview_every": 0});
    // How the ComfyUI job samples, all of it: the native job samples alike.
    let sampling = ["prompt", "negative_prompt", "model", "steps", "guidance", "scheduler", "schedule", "seed"];
    for field in sampling.into_iter().chain(["noise", "init_image", "strength", "steps_mode"]) {
        if !p[field].is_null() {
            body[field] = p[field].clone();
        }
    }
    for (k, v) in more.as_object().expect("fields") {
        body[k] = v.clone();
    }
    let job: Value = c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post").json().await.expect("json");
    let id = job["id"].as_str().unwrap_or_else(|| panic!("{body}: {job}"));
    let done = wait_job(c, d, id, Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let arts = get(c, d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let art =
        arts.as_array().and_then(|a| a.iter().find(|a| a["name"].as_str().is_some_and(|n| n.starts_with("image"))));
    let url = art.and_then(|a| a["url"].as_str()).unwrap_or_else(|| panic!("no picture: {arts}"));
    let bytes = c.get(d.at(url)).send().await.expect("get").bytes().await.expect("bytes");
    image::load_from_memory(&bytes).expect("a PNG").to_rgb8()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mask_nodes_redraw_the_part_comfyuis_arithmetic_gives_as_the_native_job_does() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let door = upload(&c, &d, "door.png", left_half_transparent()).await;

    // 1. InvertMask of a mask upload's MASK (its transparent left half): on the picture, the
    // left half kept, the right redrawn.
    let opaque = upload(&c, &d, "door-opaque.png", DynamicImage::ImageRgb8(picture())).await;
    let nodes = [("16", load(&door)), ("13", node("InvertMask", json!({"mask": ["16", 1]})))];
    let (job, out) = run(&c, &d, masked_graph(&opaque, &nodes, json!(["13", 0]))).await;
    let mask = job["params"]["mask"].as_str().unwrap_or_else(|| panic!("{job}")).to_string();
    assert_ne!(mask, job["params"]["init_image"].as_str().expect("init"), "a mask of its own: {job}");
    assert_eq!(differing(&out, 0..32), 0, "what the inverted mask keeps is the picture's own");
    assert!(differing(&out, 38..64) > 26 * 64 / 2, "the rest is redrawn");
    let kept = grey_artifact(&c, &d, &mask).await;
    assert!(kept.enumerate_pixels().all(|(x, _, p)| p.0[0] == if x < 32 { 0 } else { 255 }), "the inverted mask");
    // The same mask sent as a file to the native route: the same pixels.
    let inverted = GrayImage::from_fn(64, 64, |x, _| Luma([if x < 32 { 0 } else { 255 }]));
    let mut png = Vec::new();
    DynamicImage::ImageLuma8(inverted)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let sent = common::api::upload(&d, None, "inverted.png", png).await["id"].as_str().expect("id").to_string();
    let same = native(&c, &d, &job, &sent, json!({})).await == out;
    assert!(same, "the native job with the inverted mask file gives the same pixels");

    // 2. GrowMask by 3, square corners: the native job's mask_grow 3 of the same mask.
    let grow = node("GrowMask", json!({"mask": ["10", 1], "expand": 3, "tapered_corners": false}));
    let (job, out) = run(&c, &d, masked_graph(&door, &[("13", grow)], json!(["13", 0]))).await;
    assert_eq!(differing(&out, 35..64), 0, "kept past the grown edge");
    assert!(differing(&out, 32..35) > 0, "redrawn past the mask's own edge");
    let door_id = job["params"]["init_image"].as_str().expect("init").to_string();
    let same = native(&c, &d, &job, &door_id, json!({"mask_grow": 3})).await == out;
    assert!(same, "the native job's mask_grow 3 of the same mask gives the same pixels");

    // 3. SolidMask and MaskComposite: nothing `or` a 16-pixel band at x = 48 redraws the band.
    let nodes = [
        ("13", node("SolidMask", json!({"value": 0.0, "width": 64, "height": 64}))),
        ("14", node("SolidMask", json!({"value": 1.0, "width": 16, "height": 64}))),
        (
            "15",
            node(
                "MaskComposite",
                json!({"destination": ["13", 0], "source": ["14", 0], "x": 48, "y": 0, "operation": "or"}),
            ),
        ),
    ];
    let (_, out) = run(&c, &d, masked_graph(&opaque, &nodes, json!(["15", 0]))).await;
    assert_eq!(differing(&out, 0..48), 0, "outside the band the picture's own");
    assert!(differing(&out, 54..64) > 5 * 64, "the band redrawn");

    // 4. LoadImageMask's green of a coloured picture (refused before), above 0.5: the left half.
    let coloured = RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, if x < 32 { 200 } else { 90 }, (y * 4) as u8]));
    let coloured = upload(&c, &d, "coloured.png", DynamicImage::ImageRgb8(coloured)).await;
    let nodes = [
        ("13", node("LoadImageMask", json!({"image": coloured, "channel": "green"}))),
        ("14", node("ThresholdMask", json!({"mask": ["13", 0], "value": 0.5}))),
    ];
    let (_, out) = run(&c, &d, masked_graph(&opaque, &nodes, json!(["14", 0]))).await;
    assert_eq!(differing(&out, 32..64), 0, "green at 90/255 is kept");
    assert!(differing(&out, 0..26) > 26 * 64 / 2, "green at 200/255 is redrawn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mask_nodes_are_listed_and_bad_inputs_name_their_node_and_input() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();

    // /object_info lists them with ComfyUI's inputs (sizes up to the box's largest side).
    let info = get(&c, &d, "/object_info").await;
    let grow = &info["GrowMask"];
    assert_eq!(grow["input_order"]["required"], json!(["mask", "expand", "tapered_corners"]));
    assert_eq!(
        grow["input"]["required"]["expand"],
        json!(["INT", {"default": 0, "min": -2048, "max": 2048, "step": 1}])
    );
    assert_eq!(grow["input"]["required"]["tapered_corners"], json!(["BOOLEAN", {"default": true}]));
    assert_eq!((&grow["output"], &grow["category"]), (&json!(["MASK"]), &json!("mask")));
    assert_eq!(grow["python_module"], "comfy_extras.nodes_mask");
    let composite = &info["MaskComposite"]["input"]["required"];
    assert_eq!(composite["operation"], json!([["multiply", "add", "subtract", "and", "or", "xor"]]));
    assert_eq!(composite["source"], json!(["MASK"]));
    assert_eq!(info["ImageToMask"]["input"]["required"]["channel"], json!([["red", "green", "blue", "alpha"]]));
    assert_eq!(info["ImageToMask"]["display_name"], "Convert Image to Mask");
    assert_eq!(info["SolidMask"]["input"]["required"]["value"][1]["default"], 1.0);
    assert_eq!(info["SolidMask"]["input"]["required"]["width"][1]["default"], 512);
    assert_eq!(info["ThresholdMask"]["input"]["required"]["value"][1]["default"], 0.5);
    assert_eq!(info["FeatherMask"]["input_order"]["required"], json!(["mask", "left", "top", "right", "bottom"]));
    assert_eq!(info["InvertMask"]["input"]["required"], json!({"mask": ["MASK"]}));

    let door = upload(&c, &d, "door.png", left_half_transparent()).await;
    // GrowMask past the largest side.
    let grow = node("GrowMask", json!({"mask": ["10", 1], "expand": 4096, "tapered_corners": true}));
    let err = refused(&c, &d, masked_graph(&door, &[("13", grow)], json!(["13", 0])), "13").await;
    assert_eq!((&err["type"], &err["extra_info"]["input_name"]), (&json!("value_bigger_than_max"), &json!("expand")));
    // A SolidMask of another size than the picture, through an InvertMask: at its width.
    let nodes = [
        ("13", node("SolidMask", json!({"value": 1.0, "width": 512, "height": 64}))),
        ("14", node("InvertMask", json!({"mask": ["13", 0]}))),
    ];
    let err = refused(&c, &d, masked_graph(&door, &nodes, json!(["14", 0])), "13").await;
    assert_eq!((&err["type"], &err["extra_info"]["input_name"]), (&json!("custom_validation_failed"), &json!("width")));
    assert!(err["message"].as_str().is_some_and(|m| m.contains("512×64") && m.contains("64×64")), "{err}");
    // ImageToMask's alpha of LoadImage's IMAGE, which is RGB in ComfyUI.
    let alpha = node("ImageToMask", json!({"image": ["10", 0], "channel": "alpha"}));
    let err = refused(&c, &d, masked_graph(&door, &[("13", alpha)], json!(["13", 0])), "13").await;
    assert_eq!(err["extra_info"]["input_name"], "channel", "{err}");
    // Two InvertMasks taking each other's mask: a loop, refused where it closes.
    let nodes = [
        ("13", node("InvertMask", json!({"mask": ["14", 0]}))),
        ("14", node("InvertMask", json!({"mask": ["13", 0]}))),
    ];
    let err = refused(&c, &d, masked_graph(&door, &nodes, json!(["13", 0])), "14").await;
    assert_eq!((&err["type"], &err["extra_info"]["input_name"]), (&json!("unsupported_graph"), &json!("mask")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_out_a_large_mask_holds_up_no_other_request() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    // One runtime worker: work done on it would hold up every other request.
    let d = start_daemon_with(data.path(), models.path(), &[("TOKIO_WORKER_THREADS", "1")]);
    let c = http();
    let door = upload(&c, &d, "door.png", left_half_transparent()).await;
    // A 2048² mask shrunk by 1000 pixels, tapered (a few passes over its 4 million values),
    // refused at the end for its size.
    let nodes = [
        ("20", node("SolidMask", json!({"value": 0.5, "width": 2048, "height": 2048}))),
        ("21", node("GrowMask", json!({"mask": ["20", 0], "expand": -1000, "tapered_corners": true}))),
    ];
    let graph = masked_graph(&door, &nodes, json!(["21", 0]));
    let t0 = Instant::now();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), d.at("/prompt"));
        async move {
            let resp = c.post(url).json(&json!({"prompt": graph})).send().await.expect("post");
            (resp.status().as_u16(), t0.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let queue = get(&c, &d, "/prompt").await;
    let answered = asked.elapsed();
    assert!(queue["exec_info"]["queue_remaining"].is_u64(), "{queue}");
    let (status, took) = slow.await.expect("the prompt");
    assert_eq!(status, 400, "the mask is not the picture's size");
    assert!(took > Duration::from_millis(800), "the mask's work takes a while ({took:?}): else this shows nothing");
    assert!(
        answered < (took - Duration::from_millis(300)) / 2,
        "GET /prompt waited {answered:?} while the prompt took {took:?}"
    );
}
