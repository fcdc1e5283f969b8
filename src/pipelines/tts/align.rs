//! Exposing a Piper voice's per-phoneme durations. VITS computes them (`w_ceil`, the output
//! of the graph's only `Ceil` node) but exports do not list them as an output; Piper's
//! `patch_voice_with_alignment` adds the graph output with the onnx package. This does the
//! same on the serialized bytes: one `ValueInfoProto { name }` appended to
//! `ModelProto.graph.output`, everything else copied byte for byte. With durations a
//! batched run can be split back into sentences (sum of frames × hop length each).

/// ModelProto.graph
const MODEL_GRAPH: u64 = 7;
/// GraphProto.node
const GRAPH_NODE: u64 = 1;
/// GraphProto.output
const GRAPH_OUTPUT: u64 = 12;
/// NodeProto.output / NodeProto.op_type
const NODE_OUTPUT: u64 = 2;
const NODE_OP_TYPE: u64 = 4;
/// ValueInfoProto.name
const VALUE_INFO_NAME: u64 = 1;

/// Why a model's bytes could not be read as the protobuf an ONNX model is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlignError {
    #[error("truncated varint")]
    TruncatedVarint,
    #[error("varint too long")]
    VarintTooLong,
    #[error("length too large")]
    LengthTooLarge,
    #[error("length overflow")]
    LengthOverflow,
    #[error("field runs past the end")]
    PastEnd,
    #[error("unsupported wire type {0}")]
    WireType(u64),
    #[error("no graph in the model")]
    NoGraph,
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, AlignError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(AlignError::TruncatedVarint)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(AlignError::VarintTooLong)
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One field of a protobuf message: number, where its key starts, and its payload range.
struct Field {
    number: u64,
    key_start: usize,
    value: std::ops::Range<usize>,
    length_delimited: bool,
}

fn fields(buf: &[u8]) -> Result<Vec<Field>, AlignError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key_start = pos;
        let key = read_varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let start = pos;
        let length_delimited = wire == 2;
        match wire {
            0 => {
                read_varint(buf, &mut pos)?;
            }
            1 => pos += 8,
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).map_err(|_| AlignError::LengthTooLarge)?;
                pos = pos.checked_add(len).ok_or(AlignError::LengthOverflow)?;
                out.push(Field { number, key_start, value: pos - len..pos, length_delimited });
                if pos > buf.len() {
                    return Err(AlignError::PastEnd);
                }
                continue;
            }
            5 => pos += 4,
            other => return Err(AlignError::WireType(other)),
        }
        if pos > buf.len() {
            return Err(AlignError::PastEnd);
        }
        out.push(Field { number, key_start, value: start..pos, length_delimited });
    }
    Ok(out)
}

fn string_fields(msg: &[u8], number: u64) -> Result<Vec<String>, AlignError> {
    Ok(fields(msg)?
        .into_iter()
        .filter(|f| f.number == number && f.length_delimited)
        .map(|f| String::from_utf8_lossy(&msg[f.value]).into_owned())
        .collect())
}

/// Returns the model with its `Ceil` output added as a graph output, and that output's
/// name; `Ok(None)` when the graph has no single `Ceil` node or already outputs it.
pub fn add_duration_output(model: &[u8]) -> Result<Option<(Vec<u8>, String)>, AlignError> {
    let top = fields(model)?;
    let graph = top.iter().find(|f| f.number == MODEL_GRAPH && f.length_delimited).ok_or(AlignError::NoGraph)?;
    let graph_bytes = &model[graph.value.clone()];
    let mut ceil_outputs = Vec::new();
    let mut outputs = Vec::new();
    for f in fields(graph_bytes)? {
        if !f.length_delimited {
            continue;
        }
        let msg = &graph_bytes[f.value.clone()];
        match f.number {
            GRAPH_NODE if string_fields(msg, NODE_OP_TYPE)?.iter().any(|t| t == "Ceil") => {
                ceil_outputs.extend(string_fields(msg, NODE_OUTPUT)?);
            }
            GRAPH_OUTPUT => outputs.extend(string_fields(msg, VALUE_INFO_NAME)?),
            _ => {}
        }
    }
    let [name] = ceil_outputs.as_slice() else { return Ok(None) };
    if outputs.contains(name) {
        return Ok(None);
    }
    let mut value_info = Vec::with_capacity(name.len() + 4);
    value_info.push(((VALUE_INFO_NAME << 3) | 2) as u8);
    write_varint(name.len() as u64, &mut value_info);
    value_info.extend_from_slice(name.as_bytes());
    let mut new_graph = Vec::with_capacity(graph_bytes.len() + value_info.len() + 8);
    new_graph.extend_from_slice(graph_bytes);
    new_graph.push(((GRAPH_OUTPUT << 3) | 2) as u8);
    write_varint(value_info.len() as u64, &mut new_graph);
    new_graph.extend_from_slice(&value_info);
    let mut out = Vec::with_capacity(model.len() + value_info.len() + 16);
    out.extend_from_slice(&model[..graph.key_start]);
    out.push(((MODEL_GRAPH << 3) | 2) as u8);
    write_varint(new_graph.len() as u64, &mut out);
    out.extend_from_slice(&new_graph);
    out.extend_from_slice(&model[graph.value.end..]);
    Ok(Some((out, name.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(parts: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, bytes) in parts {
            write_varint((n << 3) | 2, &mut out);
            write_varint(bytes.len() as u64, &mut out);
            out.extend_from_slice(bytes);
        }
        out
    }

    fn model_with(nodes: &[(&str, &str)], outputs: &[&str]) -> Vec<u8> {
        let mut graph_parts: Vec<(u64, Vec<u8>)> = nodes
            .iter()
            .map(|(op, out)| (GRAPH_NODE, msg(&[(NODE_OUTPUT, out.as_bytes()), (NODE_OP_TYPE, op.as_bytes())])))
            .collect();
        graph_parts.extend(outputs.iter().map(|o| (GRAPH_OUTPUT, msg(&[(VALUE_INFO_NAME, o.as_bytes())]))));
        let refs: Vec<(u64, &[u8])> = graph_parts.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let graph = msg(&refs);
        // ir_version = 8 (a varint field) before the graph, a producer name after it.
        let mut model = vec![0x08, 0x08];
        model.extend(msg(&[(MODEL_GRAPH, &graph), (2, b"test")]));
        model
    }

    #[test]
    fn ceil_output_is_appended_to_the_graph_outputs() {
        let model = model_with(&[("Mul", "a"), ("Ceil", "/Ceil_output_0")], &["output"]);
        let (patched, name) = add_duration_output(&model).expect("parses").expect("patched");
        assert_eq!(name, "/Ceil_output_0");
        let top = fields(&patched).expect("valid");
        let graph = top.iter().find(|f| f.number == MODEL_GRAPH).expect("graph");
        let outs: Vec<String> = fields(&patched[graph.value.clone()])
            .expect("graph parses")
            .iter()
            .filter(|f| f.number == GRAPH_OUTPUT)
            .flat_map(|f| string_fields(&patched[graph.value.clone()][f.value.clone()], VALUE_INFO_NAME).expect("vi"))
            .collect();
        assert_eq!(outs, ["output", "/Ceil_output_0"]);
        // Fields before and after the graph are untouched.
        assert_eq!(&patched[..2], &[0x08, 0x08]);
        assert!(patched.ends_with(b"test"));
        // Patching again finds the output already there.
        assert!(add_duration_output(&patched).expect("parses").is_none());
    }

    #[test]
    fn graphs_without_a_single_ceil_are_left_alone() {
        assert!(add_duration_output(&model_with(&[("Mul", "a")], &["output"])).expect("parses").is_none());
        let two = model_with(&[("Ceil", "a"), ("Ceil", "b")], &["output"]);
        assert!(add_duration_output(&two).expect("parses").is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(add_duration_output(&[0xff, 0xff, 0xff]).is_err());
        assert!(add_duration_output(&[0x3a, 0x10, 0x01]).is_err());
    }
}
