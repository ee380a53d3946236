//! Per-tenant request budgets: a token bucket per tenant (rate and burst from the configuration,
//! or from the tenant's row when it has its own), checked once a request is authenticated. Over
//! budget is `429 RATE_LIMITED` with `Retry-After`. Buckets are per process: N gateway nodes
//! allow a tenant up to N times its budget, each node still protecting itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::error::ApiError;
use crate::domain::TenantId;
use crate::store::tenants;

/// How long a tenant's own limits are trusted before its row is read again.
const LIMITS_TTL: Duration = Duration::from_secs(30);

/// A budget: requests per second, and how many may come at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub rate: f64,
    pub burst: f64,
}

impl Limits {
    /// No budget at all (a rate of zero or less).
    fn unlimited(self) -> bool {
        self.rate <= 0.0
    }
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    limits: Limits,
    limits_read: Instant,
}

/// Every tenant's bucket on this node.
pub struct TenantBudgets {
    default: Limits,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl TenantBudgets {
    /// `rate` per second (zero: no budget) and `burst` requests.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            default: Limits {
                rate,
                burst: f64::from(burst.max(1)),
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's limits: its own when its row sets them, else the default.
    async fn read_limits(&self, db: &PgPool, tenant: TenantId) -> Limits {
        match tenants::own_limits(db, tenant).await {
            Ok(Some(own)) => Limits {
                rate: own.rate_rps.unwrap_or(self.default.rate),
                burst: own
                    .rate_burst
                    .map(|b| f64::from(b.max(1)))
                    .unwrap_or(self.default.burst),
            },
            Ok(None) => self.default,
            Err(err) => {
                tracing::warn!(error = %err, "tenant limits not read; using the default");
                self.default
            }
        }
    }

    /// Forgets the tenant's limits on this node, so its next request reads them again (after the
    /// operator changed them). Other nodes see the change within [`LIMITS_TTL`].
    pub fn forget(&self, tenant: TenantId) {
        if let Ok(mut buckets) = self.buckets.lock() {
            buckets.remove(&tenant);
        }
    }

    /// Takes one request from the tenant's budget, or answers how long to wait.
    pub async fn take(&self, db: &PgPool, tenant: TenantId) -> Result<(), ApiError> {
        let now = Instant::now();
        let stale = self
            .buckets
            .lock()
            .map(|buckets| {
                buckets
                    .get(&tenant)
                    .is_none_or(|b| now.duration_since(b.limits_read) > LIMITS_TTL)
            })
            .unwrap_or(true);
        let fresh_limits = if stale {
            Some(self.read_limits(db, tenant).await)
        } else {
            None
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let bucket = buckets.entry(tenant).or_insert_with(|| Bucket {
            tokens: self.default.burst,
            refilled: now,
            limits: self.default,
            limits_read: now,
        });
        if let Some(limits) = fresh_limits {
            if bucket.limits != limits {
                bucket.tokens = bucket.tokens.min(limits.burst);
            }
            bucket.limits = limits;
            bucket.limits_read = now;
        }
        let limits = bucket.limits;
        if limits.unlimited() {
            return Ok(());
        }
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limits.rate).min(limits.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / limits.rate;
        Err(ApiError::RateLimited {
            reason: "request budget of this tenant exceeded",
            retry_after_secs: wait.ceil().max(1.0) as u64,
        })
    }
}
