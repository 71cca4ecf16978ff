//! Vector files: `.fvecs` (per row: i32 dimension, then that many f32, little-endian), `.npy`
//! (a 2-D little-endian float32 or float64 array in C order), and `.jsonl` (one object a line:
//! `{"id": 1 | "text", "vector": [...], "payload": {...}}`, id and payload optional).
//! Rows without an id take their row number plus a starting id.

use crate::{ClientError, pb};
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// One row read from a file.
#[derive(Debug, Clone)]
pub struct VecRecord {
    /// The id, when the file gives one.
    pub id: Option<pb::PointId>,
    /// The vector.
    pub vector: Vec<f32>,
    /// The payload as JSON text, empty for none.
    pub payload_json: String,
}

enum Source {
    Fvecs(BufReader<File>),
    Npy {
        r: BufReader<File>,
        f64: bool,
        left: u64,
    },
    Jsonl(std::io::Lines<BufReader<File>>),
}

/// Reads rows from a vector file, one at a time.
pub struct VecReader {
    src: Source,
    /// Rows in the file, when known up front.
    pub rows: Option<u64>,
    /// Dimension, when known up front.
    pub dim: Option<usize>,
    line: u64,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> ClientError {
    ClientError::Input(format!("{}: {msg}", path.display()))
}

impl VecReader {
    /// Opens a file, choosing the format by its extension.
    pub fn open(path: &Path) -> Result<VecReader, ClientError> {
        let f = File::open(path).map_err(|e| bad(path, e))?;
        let len = f.metadata().map_err(|e| bad(path, e))?.len();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut r = BufReader::with_capacity(1 << 20, f);
        match ext.as_str() {
            "fvecs" => {
                let mut d = [0u8; 4];
                let (rows, dim) = if len >= 4 {
                    let mut peek = File::open(path).map_err(|e| bad(path, e))?;
                    peek.read_exact(&mut d).map_err(|e| bad(path, e))?;
                    let dim = i32::from_le_bytes(d);
                    if dim <= 0 {
                        return Err(bad(path, format!("first row has dimension {dim}")));
                    }
                    let row = 4 + 4 * dim as u64;
                    if len % row != 0 {
                        return Err(bad(
                            path,
                            format!("size {len} is not a whole number of {dim}-d rows"),
                        ));
                    }
                    (len / row, Some(dim as usize))
                } else {
                    (0, None)
                };
                Ok(VecReader {
                    src: Source::Fvecs(r),
                    rows: Some(rows),
                    dim,
                    line: 0,
                })
            }
            "npy" => {
                let (rows, dim, is_f64) = read_npy_header(&mut r).map_err(|e| bad(path, e))?;
                Ok(VecReader {
                    src: Source::Npy {
                        r,
                        f64: is_f64,
                        left: rows,
                    },
                    rows: Some(rows),
                    dim: Some(dim),
                    line: 0,
                })
            }
            "jsonl" | "json" | "ndjson" => Ok(VecReader {
                src: Source::Jsonl(r.lines()),
                rows: None,
                dim: None,
                line: 0,
            }),
            other => Err(bad(
                path,
                format!("unknown extension {other:?} (expected .fvecs, .npy or .jsonl)"),
            )),
        }
    }

    fn next_row(&mut self) -> Result<Option<VecRecord>, String> {
        self.line += 1;
        match &mut self.src {
            Source::Fvecs(r) => {
                let mut d = [0u8; 4];
                match r.read_exact(&mut d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e.to_string()),
                }
                let dim = i32::from_le_bytes(d);
                if dim <= 0 || Some(dim as usize) != self.dim {
                    return Err(format!("row {} has dimension {dim}", self.line));
                }
                let mut raw = vec![0u8; dim as usize * 4];
                r.read_exact(&mut raw).map_err(|e| e.to_string())?;
                Ok(Some(VecRecord {
                    id: None,
                    vector: le_f32s(&raw),
                    payload_json: String::new(),
                }))
            }
            Source::Npy { r, f64, left } => {
                if *left == 0 {
                    return Ok(None);
                }
                *left -= 1;
                let dim = self.dim.expect("npy header gives the dimension");
                let width = if *f64 { 8 } else { 4 };
                let mut raw = vec![0u8; dim * width];
                r.read_exact(&mut raw).map_err(|e| e.to_string())?;
                let vector = if *f64 {
                    raw.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                        .collect()
                } else {
                    le_f32s(&raw)
                };
                Ok(Some(VecRecord {
                    id: None,
                    vector,
                    payload_json: String::new(),
                }))
            }
            Source::Jsonl(lines) => loop {
                let Some(line) = lines.next() else {
                    return Ok(None);
                };
                let line = line.map_err(|e| e.to_string())?;
                if line.trim().is_empty() {
                    self.line += 1;
                    continue;
                }
                let v: Value =
                    serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", self.line))?;
                let vector = v
                    .get("vector")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("line {}: no \"vector\" list", self.line))?
                    .iter()
                    .map(|x| x.as_f64().map(|f| f as f32))
                    .collect::<Option<Vec<f32>>>()
                    .ok_or_else(|| format!("line {}: vector holds a non-number", self.line))?;
                let id = match v.get("id") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) => {
                        Some(crate::num_id(n.as_u64().ok_or_else(|| {
                            format!("line {}: id {n} is not a u64", self.line)
                        })?))
                    }
                    Some(Value::String(s)) => Some(crate::text_id(s)),
                    Some(other) => {
                        return Err(format!(
                            "line {}: id {other} must be a number or a string",
                            self.line
                        ));
                    }
                };
                let payload_json = match v.get("payload") {
                    None | Some(Value::Null) => String::new(),
                    Some(p) => p.to_string(),
                };
                return Ok(Some(VecRecord {
                    id,
                    vector,
                    payload_json,
                }));
            },
        }
    }
}

impl Iterator for VecReader {
    type Item = Result<VecRecord, ClientError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().map_err(ClientError::Input).transpose()
    }
}

fn le_f32s(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// Reads an npy header; returns (rows, dim, is_f64).
fn read_npy_header(r: &mut impl Read) -> Result<(u64, usize, bool), String> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|e| e.to_string())?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("not an .npy file".into());
    }
    let hlen = if magic[6] == 1 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b).map_err(|e| e.to_string())?;
        u16::from_le_bytes(b) as usize
    } else {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|e| e.to_string())?;
        u32::from_le_bytes(b) as usize
    };
    let mut h = vec![0u8; hlen];
    r.read_exact(&mut h).map_err(|e| e.to_string())?;
    let h = String::from_utf8_lossy(&h);
    let is_f64 = if h.contains("'<f4'") {
        false
    } else if h.contains("'<f8'") {
        true
    } else {
        return Err(format!(
            "dtype must be little-endian float32 or float64: {h}"
        ));
    };
    if h.contains("'fortran_order': True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape = h
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or("no shape in the header")?;
    let dims: Vec<u64> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| format!("bad shape {shape}")))
        .collect::<Result<_, _>>()?;
    match dims[..] {
        [n, d] if d > 0 => Ok((n, d as usize, is_f64)),
        _ => Err(format!("shape ({shape}) is not 2-D")),
    }
}

/// Writes `data` (row-major, `(data.len() / dim, dim)`) as `.fvecs`.
pub fn write_fvecs(path: &Path, data: &[f32], dim: usize) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(File::create(path)?);
    for row in data.chunks_exact(dim) {
        w.write_all(&(dim as i32).to_le_bytes())?;
        for x in row {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    w.flush()
}

/// Writes `data` as a 2-D float32 `.npy`.
pub fn write_npy(path: &Path, data: &[f32], dim: usize) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(File::create(path)?);
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        data.len() / dim,
        dim
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for x in data {
        w.write_all(&x.to_le_bytes())?;
    }
    w.flush()
}

/// Reads a whole `.fvecs` or `.npy` file into memory: (row-major data, dim).
pub fn read_all(path: &Path) -> Result<(Vec<f32>, usize), ClientError> {
    let reader = VecReader::open(path)?;
    let dim = reader.dim.unwrap_or(0);
    let mut data = Vec::with_capacity(reader.rows.unwrap_or(0) as usize * dim);
    for r in reader {
        data.extend(r?.vector);
    }
    Ok((data, dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fvecs_and_npy_round_trip() {
        let dir = std::env::temp_dir().join(format!("quiver-vecfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<f32> = (0..12).map(|x| x as f32 / 3.0).collect();
        for name in ["a.fvecs", "a.npy"] {
            let p = dir.join(name);
            if name.ends_with("fvecs") {
                write_fvecs(&p, &data, 4).unwrap()
            } else {
                write_npy(&p, &data, 4).unwrap()
            }
            let r = VecReader::open(&p).unwrap();
            assert_eq!(r.rows, Some(3));
            assert_eq!(read_all(&p).unwrap(), (data.clone(), 4));
        }
        let p = dir.join("a.jsonl");
        std::fs::write(
            &p,
            "{\"id\": 7, \"vector\": [1, 2], \"payload\": {\"a\": 1}}\n\n{\"vector\": [3, 4]}\n",
        )
        .unwrap();
        let rows: Vec<_> = VecReader::open(&p)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].payload_json, "{\"a\":1}");
        assert!(rows[1].id.is_none());
        std::fs::write(&p, "{\"vector\": [1, \"x\"]}\n").unwrap();
        assert!(VecReader::open(&p).unwrap().next().unwrap().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
