//! Kubernetes' protobuf encoding, read for the few kinds kubectl creates with it
//! (`kubectl create namespace`, `create secret generic`, `create configmap`, `create
//! serviceaccount` send `application/vnd.kubernetes.protobuf` and do not fall back to JSON):
//! the `k8s\0` envelope, its `runtime.Unknown`, and the objects' fields, turned into the JSON
//! the rest of the emulator works with. Any other kind is answered 415, as an API server that
//! does not serve protobuf for it does.
//!
//! Field numbers are those of `k8s.io/api/core/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`.

use base64::Engine;
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// The object a protobuf body holds, as JSON; `Err` says why it cannot be read.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the protobuf magic k8s\\0")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), Vec::new());
    for (number, field) in fields(envelope)? {
        match (number, field) {
            (1, Field::Bytes(type_meta)) => {
                for (number, field) in fields(type_meta)? {
                    match (number, field) {
                        (1, Field::Bytes(v)) => api_version = text(v)?,
                        (2, Field::Bytes(k)) => kind = text(k)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(object)) => raw = object.to_vec(),
            _ => {}
        }
    }
    let mut object = match kind.as_str() {
        "Namespace" => namespace(&raw)?,
        "Secret" => secret(&raw)?,
        "ConfigMap" => config_map(&raw)?,
        "ServiceAccount" => service_account(&raw)?,
        other => return Err(format!("kind {other:?} is not read from protobuf here")),
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of one message, in order.
fn fields(mut bytes: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut found = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(&mut bytes)?),
            2 => {
                let len = varint(&mut bytes)? as usize;
                if len > bytes.len() {
                    return Err("a field runs past the end of the body".into());
                }
                let (value, rest) = bytes.split_at(len);
                bytes = rest;
                Field::Bytes(value)
            }
            1 => {
                bytes = bytes.get(8..).ok_or("a fixed64 field is cut short")?;
                continue;
            }
            5 => {
                bytes = bytes.get(4..).ok_or("a fixed32 field is cut short")?;
                continue;
            }
            other => return Err(format!("wire type {other} is not read")),
        };
        found.push((number, field));
    }
    Ok(found)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or("a varint is cut short")?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint is too long".into())
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".into())
}

/// A `map<string, V>` entry: key 1, value 2.
fn entry(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let (mut key, mut value): (String, &[u8]) = (String::new(), &[]);
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(k)) => key = text(k)?,
            (2, Field::Bytes(v)) => value = v,
            _ => {}
        }
    }
    Ok((key, value))
}

/// ObjectMeta: name 1, generateName 2, namespace 3, labels 11, annotations 12, finalizers 14.
fn object_meta(bytes: &[u8]) -> Result<Value, String> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for (number, field) in fields(bytes)? {
        let Field::Bytes(value) = field else { continue };
        match number {
            1 => _ = meta.insert("name".into(), json!(text(value)?)),
            2 => _ = meta.insert("generateName".into(), json!(text(value)?)),
            3 => _ = meta.insert("namespace".into(), json!(text(value)?)),
            11 | 12 => {
                let (key, value) = entry(value)?;
                let map = if number == 11 {
                    &mut labels
                } else {
                    &mut annotations
                };
                map.insert(key, json!(text(value)?));
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(meta))
}

/// The metadata (field 1) of an object, and its other fields for `rest` to read.
fn with_metadata(
    bytes: &[u8],
    mut rest: impl FnMut(u64, Field<'_>, &mut Value) -> Result<(), String>,
) -> Result<Value, String> {
    let mut object = json!({});
    for (number, field) in fields(bytes)? {
        match (number, field) {
            (1, Field::Bytes(meta)) => object["metadata"] = object_meta(meta)?,
            (number, field) => rest(number, field, &mut object)?,
        }
    }
    Ok(object)
}

fn namespace(bytes: &[u8]) -> Result<Value, String> {
    with_metadata(bytes, |_, _, _| Ok(()))
}

/// Secret: data 2 (bytes), type 3, stringData 4, immutable 5.
fn secret(bytes: &[u8]) -> Result<Value, String> {
    with_metadata(bytes, |number, field, object| {
        match (number, field) {
            (2, Field::Bytes(pair)) => {
                let (key, value) = entry(pair)?;
                object["data"][key] =
                    json!(base64::engine::general_purpose::STANDARD.encode(value));
            }
            (3, Field::Bytes(kind)) => object["type"] = json!(text(kind)?),
            (4, Field::Bytes(pair)) => {
                let (key, value) = entry(pair)?;
                object["stringData"][key] = json!(text(value)?);
            }
            (5, Field::Varint(flag)) => object["immutable"] = json!(flag != 0),
            _ => {}
        }
        Ok(())
    })
}

/// ConfigMap: data 2, binaryData 3, immutable 4.
fn config_map(bytes: &[u8]) -> Result<Value, String> {
    with_metadata(bytes, |number, field, object| {
        match (number, field) {
            (2, Field::Bytes(pair)) => {
                let (key, value) = entry(pair)?;
                object["data"][key] = json!(text(value)?);
            }
            (3, Field::Bytes(pair)) => {
                let (key, value) = entry(pair)?;
                object["binaryData"][key] =
                    json!(base64::engine::general_purpose::STANDARD.encode(value));
            }
            (4, Field::Varint(flag)) => object["immutable"] = json!(flag != 0),
            _ => {}
        }
        Ok(())
    })
}

/// ServiceAccount: automountServiceAccountToken 4.
fn service_account(bytes: &[u8]) -> Result<Value, String> {
    with_metadata(bytes, |number, field, object| {
        if let (4, Field::Varint(flag)) = (number, field) {
            object["automountServiceAccountToken"] = json!(flag != 0);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length_delimited(number: u64, value: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8, value.len() as u8];
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn a_secret_as_kubectl_sends_it_reads_as_json() {
        let meta = [
            length_delimited(1, b"prefect-api-key"),
            length_delimited(3, b"prefect"),
        ]
        .concat();
        let data = [length_delimited(1, b"key"), length_delimited(2, b"pnu_x")].concat();
        let secret = [
            length_delimited(1, &meta),
            length_delimited(2, &data),
            length_delimited(3, b"Opaque"),
        ]
        .concat();
        let type_meta = [length_delimited(1, b"v1"), length_delimited(2, b"Secret")].concat();
        let body = [
            b"k8s\0".to_vec(),
            length_delimited(1, &type_meta),
            length_delimited(2, &secret),
        ]
        .concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "prefect-api-key", "namespace": "prefect"},
                   "data": {"key": "cG51X3g="}})
        );
        assert!(decode(b"{}").is_err());
    }
}
