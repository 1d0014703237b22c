//! ISO 3166-1 alpha-2: the codes of countries and territories a foreign
//! vehicle's registration may name (`Vehicle.country`).
//!
//! The 249 codes ISO 3166-1 lists as officially assigned (ISO 3166
//! Maintenance Agency; the newest, "SS" for South Sudan, since 2011).
//! Reserved and user-assigned codes ("UK", "EU", "XK", "ZZ"…) are not
//! among them: an alert naming one is refused at submission, where the
//! submitting system can still correct it. Entries received from peers are
//! not checked against this list, so a later change to it never makes a
//! peer's signed entry unacceptable.

/// The officially assigned codes, sorted.
const ASSIGNED: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Whether `code` (upper case) is an officially assigned ISO 3166-1
/// alpha-2 code.
pub fn is_assigned(code: &str) -> bool {
    ASSIGNED.binary_search(&code).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_unique_and_two_capitals_each() {
        assert!(ASSIGNED.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ASSIGNED
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn neighbours_and_reserved_codes() {
        for c in ["VN", "CN", "LA", "KH", "TH", "HK", "TW", "MO", "SS", "GB"] {
            assert!(is_assigned(c), "{c}");
        }
        for c in ["UK", "EU", "XK", "ZZ", "AN", "YU", "vn", "", "VNM"] {
            assert!(!is_assigned(c), "{c}");
        }
    }
}
