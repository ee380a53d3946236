//! Per-tenant request budgets, taken by a layer of their own once the caller is known: the
//! gateway's one rate algorithm ([`crate::domain::rate`]) per tenant, with rate and burst from
//! the configuration or from the tenant's row when it has its own. Over budget is
//! `429 RATE_LIMITED` with `Retry-After`. With several gateway nodes, each enforces its share:
//! the budget divided by the number of live nodes (a load balancer spreads a tenant's requests
//! over them), so the tenant's total stays its budget without a shared counter on every
//! request. A node that joins or leaves changes every node's share within a second.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::error::ApiError;
use crate::domain::TenantId;
use crate::domain::rate::{Gcra, Schedule};
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
    fn gcra(self) -> Gcra {
        // The burst is at least one request; fractions of a request cannot be spent.
        Gcra::new(self.rate, self.burst.max(1.0) as u32)
    }

    /// One node's share of the budget among `nodes`.
    fn share(self, nodes: usize) -> Self {
        let nodes = nodes.max(1) as f64;
        Self {
            rate: self.rate / nodes,
            burst: (self.burst / nodes).max(1.0),
        }
    }
}

struct Bucket {
    schedule: Schedule,
    limits: Limits,
    gcra: Gcra,
    /// The number of nodes `gcra` shares the budget among.
    shared_by: usize,
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
        self.buckets().remove(&tenant);
    }

    /// The buckets. A poisoned lock means a panic while it was held; each bucket is still a
    /// schedule and its limits, so budgets keep being enforced with them rather than waved
    /// through.
    fn buckets(&self) -> MutexGuard<'_, HashMap<TenantId, Bucket>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one request from the tenant's budget (its share of it: the budget divided by
    /// `nodes`, the live gateway nodes), or answers how long to wait.
    pub async fn take(&self, db: &PgPool, tenant: TenantId, nodes: usize) -> Result<(), ApiError> {
        let nodes = nodes.max(1);
        let now = Instant::now();
        let stale = self
            .buckets()
            .get(&tenant)
            .is_none_or(|b| now.duration_since(b.limits_read) > LIMITS_TTL);
        let fresh_limits = if stale {
            Some(self.read_limits(db, tenant).await)
        } else {
            None
        };
        let mut buckets = self.buckets();
        let bucket = buckets.entry(tenant).or_insert_with(|| Bucket {
            schedule: None,
            limits: self.default,
            gcra: self.default.share(nodes).gcra(),
            shared_by: nodes,
            limits_read: now,
        });
        if let Some(limits) = fresh_limits {
            if bucket.limits != limits {
                bucket.gcra = limits.share(nodes).gcra();
                bucket.shared_by = nodes;
            }
            bucket.limits = limits;
            bucket.limits_read = now;
        }
        if bucket.shared_by != nodes {
            bucket.gcra = bucket.limits.share(nodes).gcra();
            bucket.shared_by = nodes;
        }
        bucket
            .gcra
            .reserve(&mut bucket.schedule, now, Duration::ZERO)
            .map(|_| ())
            .map_err(|wait| ApiError::RateLimited {
                reason: "request budget of this tenant exceeded",
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            })
    }
}
