//! Members (M1–M3): what a registration must carry and how member data is shown.
//!
//! A registration is checked whole before anything is stored (M2): every field of it, and
//! for a mainland ID card its check digit and the birth date it encodes.

use crate::rules::is_date;
use crate::BusinessDate;

/// Longest name, address and e-mail, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 64;
pub const MAX_ADDRESS_BYTES: usize = 128;
pub const MAX_EMAIL_BYTES: usize = 64;
/// Longest ID number and phone number, in characters.
pub const MAX_ID_NUMBER_CHARS: usize = 20;
pub const MAX_PHONE_CHARS: usize = 20;
/// Characters left visible when an ID number or phone is masked (M3).
pub const VISIBLE_CHARS: usize = 4;

/// The documents a member card is issued against (M1).
pub use protocol::IdType;

/// A member's registration data (M1): name, ID and phone required; the rest optional (empty,
/// or 0 for the birth date). The wire's type: what the engine checks is what was sent.
pub use protocol::MemberData as Member;

/// What is wrong with a registration (M2), by field; the numbers are the `problem` of a
/// member reply (SPEC §6.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MemberProblem {
    Name = 1,
    IdType = 2,
    IdNumber = 3,
    Phone = 4,
    Address = 5,
    Email = 6,
    BirthDate = 7,
}

impl MemberProblem {
    pub fn field(self) -> &'static str {
        match self {
            MemberProblem::Name => "name",
            MemberProblem::IdType => "id_type",
            MemberProblem::IdNumber => "id_number",
            MemberProblem::Phone => "phone",
            MemberProblem::Address => "address",
            MemberProblem::Email => "email",
            MemberProblem::BirthDate => "birth_date",
        }
    }
}

/// GB 11643: the 18th character of an ID card number from the first 17 digits.
fn id_card_check_char(first17: &[u8]) -> u8 {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    CHECK[(sum % 11) as usize]
}

/// The birth date an 18-character ID card number encodes, if its form and check digit hold.
pub fn id_card_birth_date(number: &str) -> Option<BusinessDate> {
    let bytes = number.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes[17].to_ascii_uppercase() != id_card_check_char(&bytes[..17]) {
        return None;
    }
    let date: BusinessDate = number[6..14].parse().ok()?;
    is_date(date).then_some(date)
}

/// The rules of a member's data (M1–M3).
pub trait MemberRules {
    /// M2: the first problem of the registration, in field order; `Ok` when it may be stored.
    fn check(&self) -> Result<(), MemberProblem>;
    /// The birth date to use for the birthday discount (K3), as MMDD: given, or from the ID
    /// card; 0 unknown.
    fn birthday_mmdd(&self) -> u16;
    /// The ID as the uniqueness of M1 sees it: type and number, letters upper-case.
    fn id_key_text(&self) -> String;
    /// M3: the member as shown outside the customer-service role: ID number and phone
    /// masked to their last four characters, address, e-mail and birth date withheld.
    fn masked(&self) -> Member;
}

impl MemberRules for Member {
    fn check(&self) -> Result<(), MemberProblem> {
        let text_ok = |text: &str, max: usize| text.len() <= max && !text.chars().any(char::is_control);
        if self.name.trim().is_empty() || !text_ok(&self.name, MAX_NAME_BYTES) {
            return Err(MemberProblem::Name);
        }
        let id_type = IdType::from_u8(self.id_type).ok_or(MemberProblem::IdType)?;
        let number = &self.id_number;
        let encoded_birth = match id_type {
            IdType::IdCard => Some(id_card_birth_date(number).ok_or(MemberProblem::IdNumber)?),
            IdType::Passport | IdType::MilitaryId => {
                let ok = (5..=MAX_ID_NUMBER_CHARS).contains(&number.len())
                    && number.bytes().all(|b| b.is_ascii_alphanumeric());
                if !ok {
                    return Err(MemberProblem::IdNumber);
                }
                None
            }
        };
        let phone = self.phone.strip_prefix('+').unwrap_or(&self.phone);
        if !(6..=MAX_PHONE_CHARS).contains(&phone.len()) || !phone.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MemberProblem::Phone);
        }
        if !text_ok(&self.address, MAX_ADDRESS_BYTES) {
            return Err(MemberProblem::Address);
        }
        let email_ok = self.email.is_empty()
            || (text_ok(&self.email, MAX_EMAIL_BYTES)
                && !self.email.contains(char::is_whitespace)
                && self.email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.')));
        if !email_ok {
            return Err(MemberProblem::Email);
        }
        // A birth date, when given, is a date; on an ID card it is the one the ID encodes.
        if self.birth_date != 0 && (!is_date(self.birth_date) || encoded_birth.is_some_and(|d| d != self.birth_date)) {
            return Err(MemberProblem::BirthDate);
        }
        Ok(())
    }

    fn birthday_mmdd(&self) -> u16 {
        let date = match self.birth_date {
            0 if self.id_type == IdType::IdCard as u8 => id_card_birth_date(&self.id_number).unwrap_or(0),
            date => date,
        };
        (date % 10_000) as u16
    }

    fn id_key_text(&self) -> String {
        format!("{}:{}", self.id_type, self.id_number.to_ascii_uppercase())
    }

    fn masked(&self) -> Member {
        Member {
            id_number: mask(&self.id_number),
            phone: mask(&self.phone),
            address: if self.address.is_empty() { String::new() } else { "***".to_string() },
            email: if self.email.is_empty() { String::new() } else { "***".to_string() },
            birth_date: 0,
            ..self.clone()
        }
    }
}

/// All but the last [`VISIBLE_CHARS`] characters replaced by `*` (M3).
pub fn mask(text: &str) -> String {
    let count = text.chars().count();
    text.chars().enumerate().map(|(i, c)| if i + VISIBLE_CHARS < count { '*' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Member {
        Member {
            name: "张三".to_string(),
            id_type: IdType::IdCard as u8,
            // A number with a valid check digit, born 1990-03-07.
            id_number: "11010519900307101X".to_string(),
            phone: "13800138000".to_string(),
            address: String::new(),
            email: String::new(),
            birth_date: 0,
        }
    }

    #[test]
    fn m1_m2_a_registration_needs_name_valid_id_and_phone() {
        assert_eq!(member().check(), Ok(()));
        assert_eq!(member().birthday_mmdd(), 307);
        let with = |f: fn(&mut Member)| {
            let mut m = member();
            f(&mut m);
            m.check()
        };
        assert_eq!(with(|m| m.name = "  ".into()), Err(MemberProblem::Name));
        assert_eq!(with(|m| m.id_type = 9), Err(MemberProblem::IdType));
        assert_eq!(with(|m| m.id_number = "110105199003071011".into()), Err(MemberProblem::IdNumber), "check digit");
        assert_eq!(with(|m| m.id_number = "1101051990030712".into()), Err(MemberProblem::IdNumber));
        assert_eq!(with(|m| m.phone = String::new()), Err(MemberProblem::Phone), "phone is required");
        assert_eq!(with(|m| m.phone = "138-0013".into()), Err(MemberProblem::Phone));
        assert_eq!(with(|m| m.email = "nobody".into()), Err(MemberProblem::Email));
        assert_eq!(with(|m| m.email = "a@b.cn".into()), Ok(()));
        assert_eq!(with(|m| m.birth_date = 19900308), Err(MemberProblem::BirthDate), "not the ID's date");
        assert_eq!(with(|m| m.birth_date = 19900307), Ok(()));
        assert_eq!(
            with(|m| {
                m.id_type = IdType::Passport as u8;
                m.id_number = "E12345678".into();
                m.birth_date = 20230230;
            }),
            Err(MemberProblem::BirthDate),
            "no 30 February"
        );
        // The lower-case check letter is the same ID.
        let lower = Member { id_number: "11010519900307101x".into(), ..member() };
        assert_eq!(lower.check(), Ok(()));
        assert_eq!(lower.id_key_text(), member().id_key_text());
    }

    #[test]
    fn m3_outside_customer_service_the_id_and_phone_show_their_last_four_only() {
        let shown = Member { address: "北京市".into(), email: "a@b.cn".into(), ..member() }.masked();
        assert_eq!(shown.id_number, "**************101X");
        assert_eq!(shown.phone, "*******8000");
        assert_eq!((shown.address.as_str(), shown.email.as_str(), shown.birth_date), ("***", "***", 0));
        assert_eq!(shown.name, "张三");
        assert_eq!(mask("123"), "123");
    }
}
