//! kuaidi100's subscription push: the form's `param` (JSON text) read into
//! [`Kuaidi100Push`], and its `sign`, `UPPER(md5(param + salt))` over the raw `param` text.
//!
//! The sign is computed over the bytes kuaidi100 sent, before any parsing: a push whose
//! text was re-encoded on the way would not verify, which is the point.

use crate::sign::{constant_time_eq, md5_hex};
use serde_json::Value;
use wdtpipe_proto::v1::{
    Kuaidi100Event, Kuaidi100Place, Kuaidi100Push, Kuaidi100Result, Kuaidi100RouteInfo,
};

/// The sign kuaidi100 puts on a push: uppercase hex md5 of `param` then the salt.
pub fn sign(param: &str, salt: &str) -> String {
    let mut bytes = Vec::with_capacity(param.len() + salt.len());
    bytes.extend_from_slice(param.as_bytes());
    bytes.extend_from_slice(salt.as_bytes());
    md5_hex(&bytes).to_ascii_uppercase()
}

/// Whether `received` is the sign of `param` with `salt` (case-insensitive, compared in
/// constant time).
pub fn verify(param: &str, salt: &str, received: &str) -> bool {
    constant_time_eq(
        sign(param, salt).as_bytes(),
        received.trim().to_ascii_uppercase().as_bytes(),
    )
}

/// Why a `param` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("param is not JSON: {0}")]
    NotJson(String),
    #[error("param is not a JSON object")]
    NotAnObject,
    #[error("param.{0} is not an object")]
    NotObject(&'static str),
    #[error("param.lastResult.data is not an array")]
    DataNotArray,
}

/// Reads a push's `param` text: every field kuaidi100 documents; unknown ones are ignored,
/// scalars are kept as the text they were sent as (`null` as empty).
pub fn parse(param: &str) -> Result<Kuaidi100Push, PushError> {
    let value: Value =
        serde_json::from_str(param).map_err(|e| PushError::NotJson(e.to_string()))?;
    let root = value.as_object().ok_or(PushError::NotAnObject)?;
    let last_result = match root.get("lastResult") {
        None | Some(Value::Null) => None,
        Some(Value::Object(result)) => Some(result_of(result)?),
        Some(_) => return Err(PushError::NotObject("lastResult")),
    };
    Ok(Kuaidi100Push {
        status: text(root.get("status")),
        billstatus: text(root.get("billstatus")),
        message: text(root.get("message")),
        auto_check: text(root.get("autoCheck")),
        com_old: text(root.get("comOld")),
        com_new: text(root.get("comNew")),
        last_result,
    })
}

fn result_of(result: &serde_json::Map<String, Value>) -> Result<Kuaidi100Result, PushError> {
    let data = match result.get("data") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(events)) => events
            .iter()
            .map(|event| match event {
                Value::Object(event) => Ok(event_of(event)),
                _ => Err(PushError::NotObject("lastResult.data[]")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(PushError::DataNotArray),
    };
    let route_info = match result.get("routeInfo") {
        None | Some(Value::Null) => None,
        Some(Value::Object(route)) => Some(Kuaidi100RouteInfo {
            from: place(route.get("from")),
            cur: place(route.get("cur")),
            to: place(route.get("to")),
        }),
        Some(_) => return Err(PushError::NotObject("lastResult.routeInfo")),
    };
    Ok(Kuaidi100Result {
        message: text(result.get("message")),
        nu: text(result.get("nu")),
        ischeck: text(result.get("ischeck")),
        com: text(result.get("com")),
        status: text(result.get("status")),
        state: text(result.get("state")),
        condition: text(result.get("condition")),
        is_loop: matches!(result.get("isLoop"), Some(Value::Bool(true)))
            || text(result.get("isLoop")) == "true",
        data,
        route_info,
    })
}

fn event_of(event: &serde_json::Map<String, Value>) -> Kuaidi100Event {
    Kuaidi100Event {
        time: text(event.get("time")),
        ftime: text(event.get("ftime")),
        context: text(event.get("context")),
        status: text(event.get("status")),
        status_code: text(event.get("statusCode")),
        area_code: text(event.get("areaCode")),
        area_name: text(event.get("areaName")),
        area_center: text(event.get("areaCenter")),
        area_pinyin: text(event.get("areaPinYin")),
        location: text(event.get("location")),
    }
}

fn place(value: Option<&Value>) -> Option<Kuaidi100Place> {
    let place = value?.as_object()?;
    Some(Kuaidi100Place {
        number: text(place.get("number")),
        name: text(place.get("name")),
    })
}

/// A scalar as the text it was sent as; `null`, absent, arrays and objects as empty.
fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `param` of a push kuaidi100 sent for a JD parcel signed at a station, as
    /// published with its sign in go-tron/express-trace (`kuaidi100/kuaidi100_test.go`).
    const CAPTURED: &str = include_str!("../../tests/fixtures/kuaidi100/jd-signed.param.json");

    /// The published vector: that text with salt `123` signs to this.
    #[test]
    fn the_published_sign_vector() {
        assert_eq!(sign(CAPTURED, "123"), "315EDA9CDABADA878C643EBFE3DBCF1B");
        assert!(verify(CAPTURED, "123", "315EDA9CDABADA878C643EBFE3DBCF1B"));
        assert!(verify(CAPTURED, "123", "315eda9cdabada878c643ebfe3dbcf1b"));
        assert!(!verify(CAPTURED, "124", "315EDA9CDABADA878C643EBFE3DBCF1B"));
        assert!(!verify(CAPTURED, "123", ""));
        // One byte changed in the text (a re-encoded push) no longer verifies.
        let altered = CAPTURED.replacen("\"isLoop\":false", "\"isLoop\": false", 1);
        assert!(!verify(&altered, "123", "315EDA9CDABADA878C643EBFE3DBCF1B"));
    }

    /// CJK in the text and in the salt: md5 over their UTF-8 bytes (vectors computed with
    /// Python's hashlib).
    #[test]
    fn cjk_text_and_salt() {
        let signed = r#"{"lastResult":{"nu":"SF1234567890","state":"301","data":[{"context":"已签收，签收人：本人"}]}}"#;
        assert_eq!(
            sign(signed, "盐值-salt"),
            "F54A1D3BB9261482A87F4153DA686157"
        );
        let polling =
            r#"{"status":"polling","message":"快递公司参数异常：单号不存在或者已经过期"}"#;
        assert_eq!(sign(polling, "kd100"), "C1E5715FEE82656EC5E6C77F48C425DE");
    }

    /// Every documented field of the captured push is read.
    #[test]
    fn the_captured_push_reads_fully() {
        let push = parse(CAPTURED).unwrap();
        assert_eq!(push.status, "shutdown");
        assert_eq!(push.billstatus, "check");
        let result = push.last_result.unwrap();
        assert_eq!(
            (
                result.nu.as_str(),
                result.com.as_str(),
                result.state.as_str(),
                result.ischeck.as_str()
            ),
            ("JD0076810060555", "jd", "304", "1")
        );
        assert_eq!(result.condition, "00");
        assert!(!result.is_loop);
        assert_eq!(result.data.len(), 5);
        let newest = &result.data[0];
        assert_eq!(newest.time, "2022-06-30 10:34:33");
        assert_eq!(newest.status_code, "304");
        assert_eq!(newest.status, "投柜或站签收");
        assert!(newest.context.starts_with("您的快件已由快递驿站代收"));
        assert_eq!(newest.area_code, "", "null is empty");
        assert_eq!(result.data[3].area_name, "陕西,西安市,灞桥区");
        assert_eq!(result.data[3].area_pinyin, "ba qiao qu");
        let route = result.route_info.unwrap();
        assert_eq!(route.to.unwrap().number, "CN610111000000");
    }

    /// What kuaidi100 also sends (abort, updateall, corrected carriers, numbers as numbers),
    /// and what is refused.
    #[test]
    fn other_pushes_and_refusals() {
        let push = parse(
            r#"{"status":"abort","message":"3天查询无记录","autoCheck":"1","comOld":"yuantong","comNew":"ems","lastResult":{"nu":1234,"state":0,"isLoop":true,"data":[]}}"#,
        )
        .unwrap();
        assert_eq!(push.status, "abort");
        assert_eq!(
            (push.com_old.as_str(), push.com_new.as_str()),
            ("yuantong", "ems")
        );
        assert_eq!(push.auto_check, "1");
        let result = push.last_result.unwrap();
        assert_eq!((result.nu.as_str(), result.state.as_str()), ("1234", "0"));
        assert!(result.is_loop);
        assert_eq!(parse(r#"{"status":"polling"}"#).unwrap().last_result, None);
        assert!(matches!(parse("not json"), Err(PushError::NotJson(_))));
        assert_eq!(parse("[1]"), Err(PushError::NotAnObject));
        assert_eq!(
            parse(r#"{"lastResult":"x"}"#),
            Err(PushError::NotObject("lastResult"))
        );
        assert_eq!(
            parse(r#"{"lastResult":{"data":{}}}"#),
            Err(PushError::DataNotArray)
        );
    }
}
