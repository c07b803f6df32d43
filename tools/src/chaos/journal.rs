//! Reading `cardswitch journal --data DIR`: one flat JSON object per journal entry. The tools
//! never link the store (RocksDB), so this is how they see what the switch wrote.
//!
//! The objects are flat (integers and strings only), so a small reader does; fields it does
//! not know are skipped, so the switch may print more.

use std::collections::HashMap;

/// What a journal entry is, by the `kind` names the switch prints: the wire's posting kinds.
pub use protocol::PostingKind as EntryKind;

/// The fields of a journal entry the checks use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    pub txn_id: u64,
    pub kind: EntryKind,
    pub card: u64,
    pub amount_minor: i64,
    pub cash_delta_minor: i64,
    pub bonus_delta_minor: i64,
    pub held_delta_minor: i64,
    pub terminal_id: u32,
    pub stan: u32,
    pub business_date: u32,
    pub ref_txn_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Integer(i128),
    Text(String),
}

/// Parses one line of the journal.
pub fn parse_journal_line(line: &str) -> Result<JournalRecord, String> {
    let fields = parse_flat_object(line)?;
    let integer = |name: &str| -> Result<i128, String> {
        match fields.get(name) {
            Some(Value::Integer(n)) => Ok(*n),
            Some(Value::Text(_)) => Err(format!("field {name} is a string, expected an integer")),
            None => Err(format!("field {name} is missing")),
        }
    };
    let text = |name: &str| -> Result<&str, String> {
        match fields.get(name) {
            Some(Value::Text(s)) => Ok(s.as_str()),
            Some(Value::Integer(_)) => Err(format!("field {name} is an integer, expected a string")),
            None => Err(format!("field {name} is missing")),
        }
    };
    fn fit<T: TryFrom<i128>>(name: &str, n: i128) -> Result<T, String> {
        T::try_from(n).map_err(|_| format!("field {name} is out of range: {n}"))
    }
    let kind_name = text("kind")?;
    let kind = EntryKind::from_name(kind_name).ok_or_else(|| format!("unknown kind {kind_name:?}"))?;
    let card_text = text("card")?;
    let card = card_text.parse::<u64>().map_err(|_| format!("card {card_text:?} is not a card number"))?;
    Ok(JournalRecord {
        txn_id: fit("txn_id", integer("txn_id")?)?,
        kind,
        card,
        amount_minor: fit("amount_minor", integer("amount_minor")?)?,
        cash_delta_minor: fit("cash_delta_minor", integer("cash_delta_minor")?)?,
        bonus_delta_minor: fit("bonus_delta_minor", integer("bonus_delta_minor")?)?,
        held_delta_minor: fit("held_delta_minor", integer("held_delta_minor")?)?,
        terminal_id: fit("terminal_id", integer("terminal_id")?)?,
        stan: fit("stan", integer("stan")?)?,
        business_date: fit("business_date", integer("business_date")?)?,
        ref_txn_id: fit("ref_txn_id", integer("ref_txn_id")?)?,
    })
}

/// A JSON object whose values are integers or strings, nothing nested.
fn parse_flat_object(line: &str) -> Result<HashMap<String, Value>, String> {
    let mut reader = Reader { bytes: line.as_bytes(), at: 0 };
    let mut fields = HashMap::new();
    reader.expect(b'{')?;
    if !reader.take(b'}') {
        loop {
            let name = reader.string()?;
            reader.expect(b':')?;
            let value = reader.value()?;
            if fields.insert(name.clone(), value).is_some() {
                return Err(format!("field {name} appears twice"));
            }
            if reader.take(b',') {
                continue;
            }
            reader.expect(b'}')?;
            break;
        }
    }
    reader.skip_space();
    if reader.at != reader.bytes.len() {
        return Err(format!("unexpected text after the object at byte {}", reader.at));
    }
    Ok(fields)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip_space(&mut self) {
        while self.at < self.bytes.len() && matches!(self.bytes[self.at], b' ' | b'\t' | b'\r' | b'\n') {
            self.at += 1;
        }
    }

    /// Consumes `byte` (after blanks) if it comes next.
    fn take(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.take(byte) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", byte as char, self.at))
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_space();
        match self.bytes.get(self.at) {
            Some(b'"') => self.string().map(Value::Text),
            Some(b'-' | b'0'..=b'9') => self.integer().map(Value::Integer),
            _ => Err(format!("expected an integer or a string at byte {}", self.at)),
        }
    }

    fn integer(&mut self) -> Result<i128, String> {
        let start = self.at;
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let digits = self.at;
        while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_digit() {
            self.at += 1;
        }
        // Fractions and exponents are not integers: refused, never rounded.
        if self.at == digits || matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E')) {
            return Err(format!("expected an integer at byte {start}"));
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).expect("ASCII");
        text.parse::<i128>().map_err(|_| format!("integer {text} is too large"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err("a string is not closed".to_string());
            };
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let escaped = *self.bytes.get(self.at).ok_or("a string ends in an escape")?;
                    self.at += 1;
                    match escaped {
                        b'"' | b'\\' | b'/' => out.push(escaped),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'u' => {
                            let hex = self.bytes.get(self.at..self.at + 4).ok_or("a \\u escape is cut short")?;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or("a \\u escape is not hexadecimal")?;
                            self.at += 4;
                            // Surrogate pairs never occur in what the switch prints.
                            let c = char::from_u32(code).ok_or("a \\u escape is not a character")?;
                            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        other => return Err(format!("unknown escape \\{}", other as char)),
                    }
                }
                byte if byte < 0x20 => return Err("a control character in a string".to_string()),
                byte => out.push(byte),
            }
        }
        String::from_utf8(out).map_err(|_| "a string is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as `cardswitch journal` prints it.
    const CAPTURE: &str = "{\"txn_id\":418301,\"kind\":\"capture\",\"card\":\"6200880000000017\",\"product\":1,\
         \"business_date\":20261122,\"time_ms\":1795311005123,\"local_time\":20261122093005,\
         \"terminal_id\":1001,\"store_id\":21,\"stan\":123,\"operator_id\":0,\"amount_minor\":12345,\
         \"cash_delta_minor\":-9345,\"bonus_delta_minor\":-3000,\"held_delta_minor\":-13000,\
         \"ref_txn_id\":418200,\"method\":0,\"category\":3,\"sale_flags\":0}";

    #[test]
    fn a_journal_line_reads_back_into_its_fields() {
        assert_eq!(
            parse_journal_line(CAPTURE),
            Ok(JournalRecord {
                txn_id: 418_301,
                kind: EntryKind::Capture,
                card: 6_200_880_000_000_017,
                amount_minor: 12_345,
                cash_delta_minor: -9_345,
                bonus_delta_minor: -3_000,
                held_delta_minor: -13_000,
                terminal_id: 1_001,
                stan: 123,
                business_date: 20261122,
                ref_txn_id: 418_200,
            })
        );
        // Blanks between tokens, fields in another order, unknown fields: all fine.
        let spaced = " { \"kind\" : \"sale\", \"extra\": \"x\\\"y\\u0041\", \"txn_id\": 1, \"card\": \"12345678\", \
                      \"amount_minor\": 5, \"cash_delta_minor\": -5, \"bonus_delta_minor\": 0, \
                      \"held_delta_minor\": 0, \"terminal_id\": 7, \"stan\": 9, \"business_date\": 0, \
                      \"ref_txn_id\": 0 } ";
        let record = parse_journal_line(spaced).unwrap();
        assert_eq!((record.kind, record.txn_id, record.card, record.stan), (EntryKind::Sale, 1, 12_345_678, 9));
    }

    #[test]
    fn anything_but_a_complete_flat_entry_is_refused() {
        let without = |field: &str| {
            let start = CAPTURE.find(&format!("\"{field}\"")).unwrap();
            let end = start + CAPTURE[start..].find(',').unwrap() + 1;
            format!("{}{}", &CAPTURE[..start], &CAPTURE[end..])
        };
        assert!(parse_journal_line(&without("stan")).unwrap_err().contains("stan is missing"));
        assert!(parse_journal_line(&without("txn_id")).unwrap_err().contains("txn_id is missing"));
        assert!(parse_journal_line(&CAPTURE.replace("capture", "teleport")).unwrap_err().contains("unknown kind"));
        assert!(parse_journal_line(&CAPTURE.replace("\"stan\":123", "\"stan\":\"123\"")).is_err());
        assert!(parse_journal_line(&CAPTURE.replace("\"stan\":123", "\"stan\":-1")).unwrap_err().contains("range"));
        assert!(parse_journal_line(&CAPTURE.replace("\"stan\":123", "\"stan\":1.5")).is_err());
        assert!(parse_journal_line(&CAPTURE.replace("\"stan\":123", "\"stan\":1e3")).is_err());
        assert!(parse_journal_line(&CAPTURE.replace("\"stan\":123", "\"stan\":null")).is_err());
        assert!(parse_journal_line(&CAPTURE.replace("\"stan\":123", "\"stan\":{}")).is_err());
        assert!(parse_journal_line(&CAPTURE.replace("6200880000000017", "62008x")).unwrap_err().contains("card"));
        assert!(parse_journal_line(&CAPTURE.replace(",\"method\":0", ",\"stan\":0")).unwrap_err().contains("twice"));
        assert!(parse_journal_line(&CAPTURE[..CAPTURE.len() - 1]).is_err());
        assert!(parse_journal_line(&format!("{CAPTURE}{{}}")).unwrap_err().contains("after the object"));
        assert!(parse_journal_line("").is_err());
        assert!(parse_journal_line("{\"kind\":\"sale").is_err());
        assert!(parse_journal_line("{}").unwrap_err().contains("missing"));
        let huge = CAPTURE.replace("\"txn_id\":418301", "\"txn_id\":99999999999999999999999999999999999999999");
        assert!(parse_journal_line(&huge).is_err());
    }
}
