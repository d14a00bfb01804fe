//! A decoder for snappy's raw (block) format, written from Google's format
//! description (`format_description.txt` in google/snappy) and sharing no
//! code with the `snap` crate that nixtla compresses with.
//!
//! A block is the uncompressed length as a varint, then elements. The low
//! two bits of each element's tag byte select its kind:
//! - `00` literal: length - 1 in the upper six bits, or for values 60..=63
//!   in the next 1..=4 little-endian bytes, followed by the literal bytes;
//! - `01` copy: length 4..=11 from bits 2..=4, offset from bits 5..=7 and
//!   the next byte (11 bits);
//! - `10` copy: length 1..=64 from the upper six bits, 2-byte offset;
//! - `11` copy: length 1..=64 from the upper six bits, 4-byte offset.
//!
//! Copies read from output already produced and may overlap it.

use std::fmt;

/// The reason a block was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnappyError(pub &'static str);

impl fmt::Display for SnappyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for SnappyError {}

/// Decompresses one raw snappy block.
pub fn decompress(block: &[u8]) -> Result<Vec<u8>, SnappyError> {
    let mut input = block;
    let declared = read_length_varint(&mut input)?;
    // The declared length is untrusted, so it only bounds the output.
    let mut output = Vec::with_capacity(declared.min(block.len().saturating_mul(64)));
    while let Some((&tag, rest)) = input.split_first() {
        input = rest;
        match tag & 0b11 {
            0b00 => {
                let length = literal_length(tag, &mut input)?;
                if input.len() < length {
                    return Err(SnappyError("literal runs past the end of the block"));
                }
                let (literal, rest) = input.split_at(length);
                output.extend_from_slice(literal);
                input = rest;
            }
            0b01 => {
                let low = take(&mut input, 1)?[0] as usize;
                let length = 4 + ((tag >> 2) & 0b111) as usize;
                let offset = (((tag >> 5) as usize) << 8) | low;
                copy(&mut output, offset, length)?;
            }
            0b10 => {
                let bytes = take(&mut input, 2)?;
                let offset = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
                copy(&mut output, offset, 1 + (tag >> 2) as usize)?;
            }
            _ => {
                let bytes = take(&mut input, 4)?;
                let offset = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                copy(&mut output, offset as usize, 1 + (tag >> 2) as usize)?;
            }
        }
        if output.len() > declared {
            return Err(SnappyError("output is longer than the declared length"));
        }
    }
    if output.len() != declared {
        return Err(SnappyError("output is shorter than the declared length"));
    }
    Ok(output)
}

/// Reads the uncompressed length: a varint of at most 32 bits.
fn read_length_varint(input: &mut &[u8]) -> Result<usize, SnappyError> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = take(input, 1)?[0];
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(value)
                .map(|length| length as usize)
                .map_err(|_| SnappyError("declared length does not fit in 32 bits"));
        }
    }
    Err(SnappyError("declared length varint is longer than 5 bytes"))
}

fn literal_length(tag: u8, input: &mut &[u8]) -> Result<usize, SnappyError> {
    let code = (tag >> 2) as usize;
    if code < 60 {
        return Ok(code + 1);
    }
    let bytes = take(input, code - 59)?;
    let mut length = 0usize;
    for (index, byte) in bytes.iter().enumerate() {
        length |= (*byte as usize) << (8 * index);
    }
    Ok(length + 1)
}

fn take<'a>(input: &mut &'a [u8], count: usize) -> Result<&'a [u8], SnappyError> {
    if input.len() < count {
        return Err(SnappyError("element runs past the end of the block"));
    }
    let (taken, rest) = input.split_at(count);
    *input = rest;
    Ok(taken)
}

/// Appends `length` bytes starting `offset` bytes back, one byte at a time
/// so an overlapping copy repeats the bytes it has just written.
fn copy(output: &mut Vec<u8>, offset: usize, length: usize) -> Result<(), SnappyError> {
    if offset == 0 {
        return Err(SnappyError("copy with offset 0"));
    }
    if offset > output.len() {
        return Err(SnappyError(
            "copy offset points before the start of the output",
        ));
    }
    let start = output.len() - offset;
    for index in 0..length {
        let byte = output[start + index];
        output.push(byte);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_copies_decode() {
        // "abcd" as a literal, then a 1-byte-offset copy of 8 bytes from 4 back.
        let block = [12, 3 << 2, b'a', b'b', b'c', b'd', 0b001_0001, 4];
        assert_eq!(decompress(&block).unwrap(), b"abcdabcdabcd");
    }

    #[test]
    fn overlapping_copy_repeats_bytes() {
        // "x", then a 2-byte-offset copy of 5 bytes from 1 back.
        let block = [6, 0, b'x', (4 << 2) | 0b10, 1, 0];
        assert_eq!(decompress(&block).unwrap(), b"xxxxxx");
    }

    #[test]
    fn long_literal_uses_extra_length_bytes() {
        let text = vec![b'q'; 300];
        let mut block = vec![0xac, 0x02, 61 << 2];
        block.extend_from_slice(&(299u16).to_le_bytes());
        block.extend_from_slice(&text);
        assert_eq!(decompress(&block).unwrap(), text);
    }

    #[test]
    fn four_byte_offset_copy_decodes() {
        let block = [4, 1 << 2, b'h', b'i', (1 << 2) | 0b11, 2, 0, 0, 0];
        assert_eq!(decompress(&block).unwrap(), b"hihi");
    }

    #[test]
    fn invalid_blocks_are_rejected() {
        let cases: [&[u8]; 6] = [
            &[],
            &[5, 0, b'a'],
            &[1, 4, b'a'],
            &[2, 0, b'a', 0b01, 0],
            &[2, 0, b'a', 0b01, 2],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ];
        for block in cases {
            assert!(decompress(block).is_err(), "{block:?} was accepted");
        }
    }
}
