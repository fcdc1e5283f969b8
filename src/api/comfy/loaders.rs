//! ComfyUI's loaders of a model's parts on their own: UNETLoader ("Load Diffusion Model",
//! a UNet from `models/diffusion_models`) and VAELoader ("Load VAE", from `models/vae`).
//! Clients read their choices from `/object_info` without a guard (SillyTavern lists
//! `UNETLoader`'s `unet_name` beside the checkpoints, and `VAELoader`'s `vae_name` as its
//! VAEs), so both are described, with ComfyUI's inputs.
//!
//! Their choices are what reelbox can load as such, and that is nothing: the catalog holds
//! whole diffusion models (`models::ModelKind::Diffusion`: UNet, text encoders and VAE of one
//! export, run together), no UNet or VAE on its own. So both lists are empty, and a graph
//! naming any UNet or VAE is refused at that node and input as ComfyUI refuses a file it
//! does not have (`value_not_in_list`), before anything is compiled.

use super::nodes::{InputKind, InputSpec, NodeSpec};

/// ComfyUI's loader of a UNet alone.
pub const UNET: &str = "UNETLoader";
/// ComfyUI's loader of a VAE alone.
pub const VAE: &str = "VAELoader";

/// Both loaders' class types, as `/object_info` lists them.
pub const CLASS_TYPES: [&str; 2] = [UNET, VAE];

/// The spec of a loader, as ComfyUI's `nodes.py` defines it (its choices reelbox's).
pub(super) fn spec(class_type: &str) -> Option<NodeSpec> {
    let combo = |name, choices: Vec<String>| InputSpec { name, kind: InputKind::Combo(choices) };
    Some(match class_type {
        UNET => NodeSpec {
            class_type: UNET,
            display_name: "Load Diffusion Model",
            category: "advanced/loaders",
            description: "Loads a UNet on its own: reelbox has none (its diffusion models load whole, \
                          through CheckpointLoaderSimple).",
            // ComfyUI's `weight_dtype` also offers fp8 casts; reelbox runs a model's own types only.
            inputs: vec![combo("unet_name", Vec::new()), combo("weight_dtype", vec!["default".into()])],
            outputs: &["MODEL"],
            output_node: false,
            python_module: "nodes",
        },
        VAE => NodeSpec {
            class_type: VAE,
            display_name: "Load VAE",
            category: "loaders",
            description: "Loads a VAE on its own: reelbox has none (each diffusion model decodes with \
                          its own, CheckpointLoaderSimple's VAE).",
            inputs: vec![combo("vae_name", Vec::new())],
            outputs: &["VAE"],
            output_node: false,
            python_module: "nodes",
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::info::node_info;
    use super::super::validate::tests::{ctx, default_workflow};
    use super::super::validate::validate;
    use super::*;

    #[test]
    fn the_loaders_have_comfyuis_inputs_and_no_choices() {
        let unet = node_info(&spec(UNET).expect("UNETLoader"));
        assert_eq!(unet["input"]["required"]["unet_name"], json!([[]]));
        assert_eq!(unet["input"]["required"]["weight_dtype"], json!([["default"]]));
        assert_eq!(unet["input_order"]["required"], json!(["unet_name", "weight_dtype"]));
        assert_eq!((&unet["output"], &unet["category"]), (&json!(["MODEL"]), &json!("advanced/loaders")));
        let vae = node_info(&spec(VAE).expect("VAELoader"));
        assert_eq!(vae["input"]["required"], json!({"vae_name": [[]]}));
        assert_eq!((&vae["output"], &vae["category"]), (&json!(["VAE"]), &json!("loaders")));
    }

    #[test]
    fn a_graph_naming_a_unet_or_a_vae_is_refused_at_that_node_and_input() {
        let mut g = default_workflow();
        g["4"]["inputs"]["ckpt_name"] = json!("tiny-sd");
        g["10"] =
            json!({"class_type": UNET, "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}});
        g["11"] = json!({"class_type": VAE, "inputs": {"vae_name": "ae.safetensors"}});
        g["3"]["inputs"]["model"] = json!(["10", 0]);
        g["8"]["inputs"]["vae"] = json!(["11", 0]);
        let refused = validate(&g, &ctx()).expect_err("refused");
        assert_eq!(refused.error["type"], "prompt_outputs_failed_validation");
        let unet = &refused.node_errors["10"];
        assert_eq!((&unet["class_type"], &unet["dependent_outputs"]), (&json!(UNET), &json!(["9"])));
        assert_eq!(unet["errors"][0]["type"], "value_not_in_list");
        assert_eq!(unet["errors"][0]["details"], "unet_name: 'flux1-dev.safetensors' not in []");
        assert_eq!(refused.node_errors["11"]["errors"][0]["extra_info"]["input_name"], "vae_name");
        assert_eq!(refused.node_errors.len(), 2, "{:?}", refused.node_errors);
    }
}
