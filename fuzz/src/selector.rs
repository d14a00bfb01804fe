//! A parser for Loki stream selectors such as `{env="dev", team="web"}`,
//! written from the Go and PromQL rules and sharing no code with nixtla.
//!
//! Loki reads the `labels` field of a push with the PromQL lexer, which
//! unquotes values like Go's `strconv.Unquote`:
//! - label names match `[a-zA-Z_][a-zA-Z0-9_]*`, and only `=` is allowed;
//! - spaces, tabs, CR and LF separate tokens, and one comma may trail;
//! - a value in `"` or `'` takes the escapes `\a \b \f \n \r \t \v \\`, the
//!   escaped quote character, three octal digits (at most 255), `\xHH`,
//!   `\uHHHH` and `\UHHHHHHHH` (a Unicode scalar value, so no surrogates);
//!   a raw LF inside it is an error;
//! - a value in backticks is taken as written and cannot contain a backtick;
//! - a quoted value of either kind must not contain U+FFFD as a character,
//!   because the lexer compares each decoded rune with `utf8.RuneError`
//!   (U+FFFD) to detect invalid UTF-8 (`lexString` and `lexRawString` in
//!   Prometheus' `promql/parser/lex.go`). The escape `\ufffd` is allowed.
//!
//! Octal and `\x` escapes stand for single bytes, so values are returned as
//! bytes. `#` comments are not supported, because nixtla never writes them.

use std::fmt;

/// The reason a selector was rejected, with the byte offset where parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses a whole selector into `(name, value)` pairs in written order.
pub fn parse_selector(text: &str) -> Result<Vec<(String, Vec<u8>)>, SyntaxError> {
    let mut parser = Parser { text, offset: 0 };
    let pairs = parser.selector()?;
    parser.skip_space();
    if parser.offset != text.len() {
        return Err(parser.error("unexpected text after the closing brace"));
    }
    Ok(pairs)
}

/// Unquotes one Go string literal, quotes included, such as `"a\x00b"`.
pub fn unquote(literal: &str) -> Result<Vec<u8>, SyntaxError> {
    let mut parser = Parser {
        text: literal,
        offset: 0,
    };
    let value = parser.quoted_value()?;
    if parser.offset != literal.len() {
        return Err(parser.error("unexpected text after the closing quote"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    offset: usize,
}

impl Parser<'_> {
    fn error(&self, message: &'static str) -> SyntaxError {
        SyntaxError {
            offset: self.offset,
            message,
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.offset..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        Some(c)
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r' | '\n')) {
            self.offset += 1;
        }
    }

    fn expect(&mut self, expected: char, message: &'static str) -> Result<(), SyntaxError> {
        if self.peek() == Some(expected) {
            self.offset += 1;
            Ok(())
        } else {
            Err(self.error(message))
        }
    }

    fn selector(&mut self) -> Result<Vec<(String, Vec<u8>)>, SyntaxError> {
        let mut pairs = Vec::new();
        self.skip_space();
        self.expect('{', "expected '{'")?;
        loop {
            self.skip_space();
            if self.peek() == Some('}') {
                self.offset += 1;
                return Ok(pairs);
            }
            let name = self.name()?;
            self.skip_space();
            self.expect('=', "expected '=' after the label name")?;
            if matches!(self.peek(), Some('~' | '=')) {
                return Err(self.error("only the '=' operator is allowed"));
            }
            self.skip_space();
            let value = self.quoted_value()?;
            pairs.push((name, value));
            self.skip_space();
            match self.bump() {
                Some(',') => {}
                Some('}') => return Ok(pairs),
                _ => return Err(self.error("expected ',' or '}' after a label value")),
            }
        }
    }

    fn name(&mut self) -> Result<String, SyntaxError> {
        let start = self.offset;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => self.offset += 1,
            _ => return Err(self.error("expected a label name")),
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.offset += 1;
        }
        Ok(self.text[start..self.offset].to_owned())
    }

    fn quoted_value(&mut self) -> Result<Vec<u8>, SyntaxError> {
        let quote = match self.bump() {
            Some(c @ ('"' | '\'' | '`')) => c,
            _ => return Err(self.error("expected a quoted value")),
        };
        let mut value = Vec::new();
        loop {
            let c = self
                .bump()
                .ok_or_else(|| self.error("unterminated quoted string"))?;
            if c == quote {
                return Ok(value);
            }
            if c == char::REPLACEMENT_CHARACTER {
                return Err(self.error("U+FFFD in a quoted string reads as invalid UTF-8"));
            }
            if quote == '`' {
                push_char(&mut value, c);
                continue;
            }
            match c {
                '\n' => return Err(self.error("newline in a quoted string")),
                '\\' => self.escape(quote, &mut value)?,
                c => push_char(&mut value, c),
            }
        }
    }

    /// Decodes the escape after a backslash and appends its bytes.
    fn escape(&mut self, quote: char, value: &mut Vec<u8>) -> Result<(), SyntaxError> {
        let c = self
            .bump()
            .ok_or_else(|| self.error("unterminated escape"))?;
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            c if c == quote => Some(c as u8),
            _ => None,
        };
        if let Some(byte) = simple {
            value.push(byte);
            return Ok(());
        }
        match c {
            '0'..='7' => {
                let rest = self.digits(2, 8)?;
                let code = (c as u32 - '0' as u32) * 64 + rest;
                let byte = u8::try_from(code).map_err(|_| self.error("octal escape above 255"))?;
                value.push(byte);
            }
            'x' => {
                let code = self.digits(2, 16)?;
                value.push(code as u8);
            }
            'u' | 'U' => {
                let count = if c == 'u' { 4 } else { 8 };
                let code = self.digits(count, 16)?;
                let scalar = char::from_u32(code)
                    .ok_or_else(|| self.error("escape is not a Unicode scalar value"))?;
                push_char(value, scalar);
            }
            _ => return Err(self.error("unknown escape sequence")),
        }
        Ok(())
    }

    fn digits(&mut self, count: usize, radix: u32) -> Result<u32, SyntaxError> {
        let mut code = 0u32;
        for _ in 0..count {
            let digit = self
                .peek()
                .and_then(|c| c.to_digit(radix))
                .ok_or_else(|| self.error("too few digits in an escape"))?;
            self.offset += 1;
            code = code * radix + digit;
        }
        Ok(code)
    }
}

fn push_char(value: &mut Vec<u8>, c: char) {
    let mut buffer = [0; 4];
    value.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escapes_decode() {
        let cases: [(&str, &[u8]); 9] = [
            (r#""plain""#, b"plain"),
            (r#""a\"b\\c""#, b"a\"b\\c"),
            (r#""\a\b\f\n\r\t\v""#, b"\x07\x08\x0c\n\r\t\x0b"),
            (r#""\000\377""#, b"\x00\xff"),
            (r#""\x41\xff""#, b"A\xff"),
            (r#""\u00e9\U0001F600""#, "é😀".as_bytes()),
            ("\"raw\ttab\rcr\"", b"raw\ttab\rcr"),
            (r#"'it\'s'"#, b"it's"),
            ("`no \\escapes`", b"no \\escapes"),
        ];
        for (literal, expected) in cases {
            assert_eq!(unquote(literal).as_deref(), Ok(expected), "{literal}");
        }
        let replacement = unquote(r#""\ufffd""#).unwrap();
        assert_eq!(replacement, "\u{fffd}".as_bytes());
    }

    #[test]
    fn invalid_literals_are_rejected() {
        for literal in [
            r#""\'""#,
            r#""\400""#,
            r#""\x4""#,
            r#""\ud800""#,
            r#""\U00110000""#,
            r#""\q""#,
            "\"line\nfeed\"",
            r#""open"#,
            r#""a"b"#,
            "\"a\u{fffd}b\"",
            "`a\u{fffd}b`",
        ] {
            assert!(unquote(literal).is_err(), "{literal:?} was accepted");
        }
    }

    #[test]
    fn selectors_parse() {
        let pairs = parse_selector(" {a=\"1\",\n b = '2', c=`3`,} ").unwrap();
        let expected = [("a", b"1"), ("b", b"2"), ("c", b"3")]
            .map(|(name, value)| (name.to_owned(), value.to_vec()));
        assert_eq!(pairs, expected);
        assert_eq!(parse_selector("{}").unwrap(), Vec::new());
    }

    #[test]
    fn invalid_selectors_are_rejected() {
        for text in [
            "",
            "{",
            r#"{a="1""#,
            r#"{1a="1"}"#,
            r#"{a:b="1"}"#,
            r#"{a=~"1"}"#,
            r#"{a!="1"}"#,
            r#"{a="1"} x"#,
            r#"{a="1",,}"#,
            r#"{a=1}"#,
        ] {
            assert!(parse_selector(text).is_err(), "{text:?} was accepted");
        }
    }
}
