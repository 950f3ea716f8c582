//! The FOCUS export (SPEC §11): FinOps FOCUS 1.2 columns, one row per day ×
//! key × tags × model × token kind, from a usage report grouped by
//! `day, key_id, model, provider` and every tag name (`group_by`).
//!
//! A report row's cost is split over its token kinds in proportion to the
//! current price table's unit prices × tokens (by tokens when the model has
//! no price now); the last kind takes the remainder, so a row group sums to
//! the stored cost exactly. The column mapping is in the README (FinOps).

use std::collections::{BTreeMap, HashMap};

use crate::domain::aggregate::{push_csv_line, UsageRow};
use crate::domain::finops::chargeback::{exact_usd, gl_account_of, UNALLOCATED};
use crate::domain::pricing::ModelPrice;
use crate::domain::time::{format_rfc3339_ms, parse_rfc3339_ms, DAY_MS};

/// The columns, in file order: FOCUS 1.2 names, then `x_` custom columns.
pub const COLUMNS: [&str; 49] = [
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "HostProviderName",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceProviderName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_GlAccount",
    "x_KeyId",
];

/// The name the one account of an aispend export carries.
pub const BILLING_ACCOUNT: &str = "aispend";

/// `SkuId` of rows whose records name no model.
pub const UNKNOWN_SKU: &str = "unknown";

/// A token kind: one FOCUS row each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Input tokens neither read from nor written to a prompt cache.
    Input,
    CachedInput,
    CacheWriteInput,
    Output,
}

impl TokenKind {
    pub const ALL: [TokenKind; 4] = [
        TokenKind::Input,
        TokenKind::CachedInput,
        TokenKind::CacheWriteInput,
        TokenKind::Output,
    ];

    /// `SkuMeter`.
    pub fn meter(self) -> &'static str {
        match self {
            TokenKind::Input => "Input Tokens",
            TokenKind::CachedInput => "Cached Input Tokens",
            TokenKind::CacheWriteInput => "Cache Write Input Tokens",
            TokenKind::Output => "Output Tokens",
        }
    }

    fn id(self) -> &'static str {
        match self {
            TokenKind::Input => "input",
            TokenKind::CachedInput => "cached_input",
            TokenKind::CacheWriteInput => "cache_write_input",
            TokenKind::Output => "output",
        }
    }

    fn unit_price(self, p: &ModelPrice) -> f64 {
        match self {
            TokenKind::Input => p.input,
            TokenKind::CachedInput => p.cache_read,
            TokenKind::CacheWriteInput => p.cache_write,
            TokenKind::Output => p.output,
        }
    }
}

/// Where each value of a report row is: the positions of `day`, `key_id`,
/// `model`, `provider` and of each tag name in the report's `group_by`.
pub struct Layout {
    pub day: usize,
    pub key_id: usize,
    pub model: usize,
    pub provider: usize,
    /// (tag name, position), sorted by name.
    pub tags: Vec<(String, usize)>,
}

/// The current unit prices of a (provider, model).
pub type PriceOf = Box<dyn Fn(&str, &str) -> Option<ModelPrice> + Send + Sync>;

/// The contract discount (a fraction) of (provider, model) on a day (ms).
pub type DiscountOf = Box<dyn Fn(&str, Option<&str>, i64) -> f64 + Send + Sync>;

/// What every row of one export shares.
pub struct Context {
    pub billing_period_start: String,
    pub billing_period_end: String,
    pub layout: Layout,
    /// GL account per cost center.
    pub accounts: HashMap<String, String>,
    pub price: PriceOf,
    /// `ListCost` is the cost before this discount (SPEC §13).
    pub discount: DiscountOf,
}

/// Splits `cost` over the kinds with tokens, in proportion to `weights`;
/// the last kind with a share takes the remainder.
fn split_cost(cost: f64, tokens: &[(TokenKind, i64)], weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut shares: Vec<f64> = if total > 0.0 {
        weights.iter().map(|w| cost * w / total).collect()
    } else {
        // No weight: by tokens; no tokens either: all on the first kind.
        let n: i64 = tokens.iter().map(|(_, t)| *t).sum();
        if n > 0 {
            tokens
                .iter()
                .map(|(_, t)| cost * *t as f64 / n as f64)
                .collect()
        } else {
            let mut v = vec![0.0; tokens.len()];
            if let Some(first) = v.first_mut() {
                *first = cost;
            }
            v
        }
    };
    if let Some(last) = shares.iter().rposition(|s| *s != 0.0) {
        let others: f64 = shares
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != last)
            .map(|(_, s)| s)
            .sum();
        if let Some(slot) = shares.get_mut(last) {
            *slot = cost - others;
        }
    }
    shares
}

/// Appends the FOCUS rows of one report row to `out` (CSV, CRLF); returns
/// the cost written (the row's cost, exactly).
pub fn write_rows(ctx: &Context, row: &UsageRow, out: &mut String) -> f64 {
    let dim = |i: usize| row.dims.get(i).cloned().flatten();
    let day = dim(ctx.layout.day).unwrap_or_default();
    let day_ms = parse_rfc3339_ms(&format!("{day}T00:00:00Z")).unwrap_or(0);
    let key_id = dim(ctx.layout.key_id).unwrap_or_default();
    let model = dim(ctx.layout.model);
    let provider = dim(ctx.layout.provider).unwrap_or_default();
    let tags: BTreeMap<&str, String> = ctx
        .layout
        .tags
        .iter()
        .filter_map(|(name, i)| dim(*i).map(|v| (name.as_str(), v)))
        .collect();
    let tags_json = serde_json::to_string(&tags).unwrap_or_else(|_| String::from("{}"));
    let cost_center = tags
        .get("cost_center")
        .cloned()
        .unwrap_or_else(|| UNALLOCATED.to_owned());
    let gl = gl_account_of(&cost_center, &ctx.accounts);
    let team = tags.get("team").cloned().unwrap_or_default();
    let s = &row.sums;
    let uncached = (s.input_tokens - s.cached_input_tokens - s.cache_write_input_tokens).max(0);
    let all = [
        (TokenKind::Input, uncached),
        (TokenKind::CachedInput, s.cached_input_tokens),
        (TokenKind::CacheWriteInput, s.cache_write_input_tokens),
        (TokenKind::Output, s.output_tokens),
    ];
    let mut kinds: Vec<(TokenKind, i64)> = all.into_iter().filter(|(_, n)| *n > 0).collect();
    if kinds.is_empty() {
        if s.cost_usd == 0.0 {
            return 0.0;
        }
        kinds.push((TokenKind::Input, 0));
    }
    let price = model.as_deref().and_then(|m| (ctx.price)(&provider, m));
    let weights: Vec<f64> = kinds
        .iter()
        .map(|(k, n)| price.as_ref().map_or(0.0, |p| k.unit_price(p) * *n as f64))
        .collect();
    let costs = split_cost(s.cost_usd, &kinds, &weights);
    let charge_start = format_rfc3339_ms(day_ms);
    let charge_end = format_rfc3339_ms(day_ms + DAY_MS);
    // A record without a model (a refused call, a provider that did not
    // say) is SKU `unknown`: FOCUS wants a SKU on every usage row.
    let model_text = model.clone().unwrap_or_else(|| String::from(UNKNOWN_SKU));
    let discount = (ctx.discount)(&provider, model.as_deref(), day_ms);
    let mut written = 0.0;
    for ((kind, tokens), cost) in kinds.iter().zip(costs) {
        written += cost;
        let cost_text = exact_usd(cost);
        // The stored cost is after the contract discount: the list cost is
        // what it would have been without it.
        let list_text = if discount > 0.0 {
            exact_usd(cost / (1.0 - discount))
        } else {
            cost_text.clone()
        };
        // A FOCUS Decimal: written with a decimal point so readers that
        // infer types (the FinOps validator reads CSV through pandas) see a
        // decimal column, not an integer one.
        let quantity = format!("{tokens}.0");
        let description = format!(
            "{} via {provider}: {}",
            model.as_deref().unwrap_or("unknown model"),
            kind.meter()
        );
        let sku_price_id = format!("{provider}/{model_text}/{}", kind.id());
        let team_opt = team.as_str();
        let fields: [&str; 49] = [
            "",
            &cost_text,
            BILLING_ACCOUNT,
            BILLING_ACCOUNT,
            "USD",
            &ctx.billing_period_end,
            &ctx.billing_period_start,
            "Usage",
            "",
            &description,
            "Usage-Based",
            &charge_end,
            &charge_start,
            "",
            "",
            "",
            "",
            "",
            &quantity,
            "Tokens",
            &cost_text,
            "",
            &cost_text,
            &provider,
            &provider,
            &list_text,
            "",
            "Standard",
            &quantity,
            "Tokens",
            &provider,
            &provider,
            "",
            "",
            "",
            "",
            "",
            "AI and Machine Learning",
            &provider,
            &provider,
            "Generative AI",
            &model_text,
            kind.meter(),
            &sku_price_id,
            team_opt,
            team_opt,
            &tags_json,
            &gl,
            &key_id,
        ];
        push_csv_line(out, fields.into_iter());
    }
    written
}

/// The header line.
pub fn header() -> String {
    let mut out = String::new();
    push_csv_line(&mut out, COLUMNS.into_iter());
    out
}
