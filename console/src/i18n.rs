//! Labels in Chinese and English. The language is the `lang` cookie (the switch in the
//! header sets it), else the browser's `Accept-Language`, else Chinese, the operators'
//! usual language.

use axum::http::HeaderMap;

/// A page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Zh,
    En,
}

impl Lang {
    /// From the `lang` cookie, else `Accept-Language` (the first language it names that
    /// the console has).
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        if let Some(lang) = crate::session::cookie(headers, "lang").and_then(|v| Self::parse(&v)) {
            return lang;
        }
        let accept = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        accept
            .split(',')
            .filter_map(|part| Self::parse(part.split(';').next().unwrap_or_default().trim()))
            .next()
            .unwrap_or(Self::Zh)
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        if text.starts_with("zh") {
            Some(Self::Zh)
        } else if text.starts_with("en") {
            Some(Self::En)
        } else {
            None
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Zh => "zh",
            Self::En => "en",
        }
    }

    /// The label `key` in this language (the key itself when it has none).
    pub(crate) fn t(self, key: &'static str) -> &'static str {
        LABELS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map_or(key, |(_, en, zh)| match self {
                Self::En => en,
                Self::Zh => zh,
            })
    }
}

/// (key, English, Chinese).
const LABELS: &[(&str, &str, &str)] = &[
    ("title", "wdtpipe console", "wdtpipe 控制台"),
    ("overview", "Overview", "总览"),
    ("orders", "Orders", "订单"),
    ("dead_letters", "Dead letters", "死信"),
    ("schemes", "Schemes", "集成方案"),
    ("shops", "Shops", "店铺"),
    ("audit", "Audit", "审计"),
    (
        "search_placeholder",
        "tid, record id or tracking number",
        "订单号、记录 ID 或运单号",
    ),
    ("search", "Search", "查询"),
    ("login", "Log in", "登录"),
    ("logout", "Log out", "退出"),
    ("operator", "Operator", "操作员"),
    ("name", "Your name", "您的名字"),
    ("token", "Operator token", "操作令牌"),
    ("health", "Health", "健康状态"),
    ("service", "Service", "服务"),
    ("state", "State", "状态"),
    ("connector", "WDT account", "旺店通账号"),
    ("shop", "Shop", "店铺"),
    ("queued", "Queued", "排队"),
    ("in_flight", "In flight", "推送中"),
    ("retrying", "Retrying", "重试中"),
    ("oldest", "Oldest waiting", "最久等待"),
    ("delivered_min", "Delivered / min", "每分钟送达"),
    ("last_hour", "Last hour", "近一小时"),
    ("paused", "Paused", "已暂停"),
    ("next_probe", "Next probe", "下次探测"),
    ("since", "Since", "开始于"),
    ("reason", "Reason", "原因"),
    ("scheme", "Scheme", "方案"),
    ("accepted_min", "Accepted / min", "每分钟接收"),
    ("rejected_min", "Rejected (422) / min", "每分钟拒绝 (422)"),
    ("skipped_min", "Skipped / min", "每分钟跳过"),
    ("shard", "Shard", "分片"),
    ("storage", "Outbox", "发件箱"),
    ("writable", "writable", "可写"),
    ("free", "free", "剩余"),
    ("live", "live", "实时"),
    ("polling", "polling", "轮询"),
    ("paused_hidden", "paused (tab hidden)", "已暂停（页面隐藏）"),
    ("no_shops", "No shop has trades yet.", "暂无店铺数据。"),
    ("version", "Version", "版本"),
    ("source", "Source", "来源"),
    ("loaded_at", "Loaded", "加载时间"),
    ("rules", "Rules", "规则"),
    (
        "reload_error",
        "Last reload refused",
        "最近一次重新加载被拒绝",
    ),
    ("preview", "Preview", "预览"),
    (
        "preview_help",
        "Paste a callback (one record, an array, or {\"stockout_list\": […]}); see the trades and what produced each field.",
        "粘贴一个回调（单条记录、数组或 {\"stockout_list\": […]}），查看生成的订单及每个字段的来源规则。",
    ),
    ("callback_json", "Callback JSON", "回调 JSON"),
    (
        "scheme_text",
        "Or a scheme file's text (not loaded)",
        "或方案文件内容（不会加载）",
    ),
    (
        "why",
        "Why is this order not in WDT yet?",
        "为什么这个订单还没到旺店通？",
    ),
    ("path", "Path", "处理路径"),
    ("received", "Received by ingest", "ingest 接收"),
    ("mapped", "Mapped by transform", "transform 转换"),
    ("on_disk", "On disk at deliver", "deliver 落盘"),
    ("attempts", "Attempts", "推送尝试"),
    ("at", "At", "时间"),
    ("outcome", "Outcome", "结果"),
    ("answer", "WDT's answer", "旺店通应答"),
    ("trade_pushed", "The trade as pushed", "推送的订单"),
    ("tracking", "Parcel (kuaidi100)", "物流（快递100）"),
    ("not_found", "Nothing found", "未找到"),
    ("filter", "Filter", "筛选"),
    ("tid", "Tid", "订单号"),
    ("dead_at", "Dead at", "死信时间"),
    ("until", "Until", "截止"),
    ("count", "Count", "数量"),
    ("by_reason", "By reason", "按原因分组"),
    ("replay", "Replay", "重放"),
    ("remap", "Remap", "重新映射"),
    ("discard", "Discard", "丢弃"),
    ("selected", "selected", "选中的"),
    ("all_matching", "all matching", "全部匹配的"),
    ("dry_run", "Dry run", "预演"),
    ("confirm", "Confirm", "确认执行"),
    ("cancel", "Cancel", "取消"),
    ("equivalent", "Equivalent command", "等价命令"),
    ("next_page", "Next page", "下一页"),
    ("resume", "Resume now", "立即恢复"),
    ("who", "Who", "操作人"),
    ("action", "Action", "操作"),
    ("what", "What", "范围"),
    ("result", "Result", "结果"),
    ("login_needed", "Log in to act.", "登录后才能操作。"),
    ("alerts", "Alerts", "告警"),
    ("firing", "Firing", "告警中"),
    ("webhook", "Webhook", "机器人"),
    ("sent", "Sent", "已发送"),
    ("failed", "Failed", "失败"),
    ("none", "none", "无"),
    ("total", "Total", "合计"),
    ("records", "Records", "记录"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every label has both languages and no key is declared twice.
    #[test]
    fn labels_are_complete() {
        let mut keys = std::collections::HashSet::new();
        for (key, en, zh) in LABELS {
            assert!(keys.insert(key), "{key} twice");
            assert!(!en.is_empty() && !zh.is_empty(), "{key}");
        }
    }

    /// The cookie wins over Accept-Language; Chinese without either.
    #[test]
    fn language_choice() {
        let mut headers = HeaderMap::new();
        assert_eq!(Lang::of(&headers), Lang::Zh);
        headers.insert(
            "accept-language",
            "en-US,en;q=0.9,zh;q=0.5".parse().unwrap(),
        );
        assert_eq!(Lang::of(&headers), Lang::En);
        headers.insert("cookie", "lang=zh".parse().unwrap());
        assert_eq!(Lang::of(&headers), Lang::Zh);
        assert_eq!(Lang::En.t("shops"), "Shops");
        assert_eq!(Lang::Zh.t("shops"), "店铺");
    }
}
