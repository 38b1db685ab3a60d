//! Tests of the scheme file reader.

use super::*;

fn errors(text: &str) -> Vec<String> {
    parse(
        Path::new("s.toml"),
        text.as_bytes(),
        &BuiltinOptions::default(),
        &["default".to_owned()],
    )
    .unwrap_err()
    .iter()
    .map(ToString::to_string)
    .collect()
}

#[test]
fn errors_name_the_place_and_the_closest_key() {
    assert_eq!(
        errors("id = \"a\"\n[trade]\nshop_no = { from = \"x\", tabel = \"t\" }\n"),
        [
            "s.toml:3:25: unknown field `tabel`, expected one of `value`, `from`, `expr`, `table`, `miss`, `miss_value`; did you mean \"table\"?"
        ]
    );
    assert_eq!(
        errors("id = \"a\"\n[trade]\nshopno = { value = 1 }\nbuyer_nik = { value = 1 }\n"),
        [
            "s.toml:3:1: [trade] \"shopno\" is not a field of a trade_push trade; did you mean \"shop_no\"?",
            "s.toml:4:1: [trade] \"buyer_nik\" is not a field of a trade_push trade; did you mean \"buyer_nick\"?",
        ]
    );
    let all = errors(
        "id = \"a\"\nskip = \"line.x\"\n[trade]\npaid = { expr = \"record.paid +\" }\nseller_memo = {}\ntid = { value = 1, from = \"a\" }\nshop_no = { from = \"a\", table = \"t\" }\n",
    );
    assert_eq!(all.len(), 5, "{all:#?}");
    assert!(
        all[0].starts_with("s.toml:2:9: skip does not compile: undeclared variable 'line'"),
        "{}",
        all[0]
    );
    assert!(all[1].starts_with("s.toml:4:"), "{}", all[1]);
    assert!(all[1].contains("expr does not compile"), "{}", all[1]);
    assert!(all[2].contains("no source"), "{}", all[2]);
    assert!(all[3].contains("more than one source"), "{}", all[3]);
    assert!(all[4].contains("table \"t\" does not exist"), "{}", all[4]);
}
