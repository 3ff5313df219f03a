//! Engine settings a deployment (or a scenario) may change, with their valid
//! ranges. Defaults live in [`crate::limits`].

use crate::limits;
use crate::time::Span;

/// Settings shared by the production daemon and the simulator (the `P` rows of
/// SCENARIOS.md's settings table that this engine has built so far).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub lifecycle_interval: Span,
    pub usage_flush_interval: Span,
    pub notification_poll_interval: Span,
    pub notification_retry: Span,
    pub shutdown_timeout: Span,
    pub db_pool_size: u32,
    pub db_acquire_timeout: Span,
    pub provisioner_stale_after: Span,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lifecycle_interval: limits::LIFECYCLE_INTERVAL_DEFAULT,
            usage_flush_interval: limits::USAGE_FLUSH_INTERVAL_DEFAULT,
            notification_poll_interval: limits::NOTIFICATION_POLL_INTERVAL_DEFAULT,
            notification_retry: limits::NOTIFICATION_RETRY_DEFAULT,
            shutdown_timeout: limits::SHUTDOWN_TIMEOUT_DEFAULT,
            db_pool_size: limits::DB_POOL_SIZE_DEFAULT,
            db_acquire_timeout: limits::DB_ACQUIRE_TIMEOUT_DEFAULT,
            provisioner_stale_after: limits::PROVISIONER_STALE_AFTER_DEFAULT,
        }
    }
}

/// A setting outside its valid range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting `{name}` is {value}, expected {expected}")]
pub struct SettingError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl Settings {
    /// Lifecycle workers: `min(10, max(1, floor(pool / 4)))`.
    pub fn lifecycle_workers(&self) -> usize {
        let by_pool = self.db_pool_size as usize / limits::LIFECYCLE_WORKERS_POOL_DIVISOR;
        by_pool.clamp(1, limits::LIFECYCLE_WORKERS_MAX)
    }

    /// Checks every range; the first setting out of range is the error.
    pub fn validate(&self) -> Result<(), SettingError> {
        let interval = |name: &'static str, value: Span, min: Span, max: Span, expected: &'static str| {
            if value < min || value > max {
                Err(SettingError { name, value: value.to_string(), expected })
            } else {
                Ok(())
            }
        };
        interval("lifecycle_interval", self.lifecycle_interval, Span::from_secs(1), Span::from_hours(1), "1s..1h")?;
        let positive = |name: &'static str, value: Span| {
            if value.is_positive() {
                Ok(())
            } else {
                Err(SettingError { name, value: value.to_string(), expected: "a duration above 0" })
            }
        };
        positive("usage_flush_interval", self.usage_flush_interval)?;
        positive("notification_poll_interval", self.notification_poll_interval)?;
        let non_negative = |name: &'static str, value: Span| {
            if value.is_negative() {
                Err(SettingError { name, value: value.to_string(), expected: "a duration of at least 0" })
            } else {
                Ok(())
            }
        };
        non_negative("notification_retry", self.notification_retry)?;
        non_negative("shutdown_timeout", self.shutdown_timeout)?;
        non_negative("db_acquire_timeout", self.db_acquire_timeout)?;
        non_negative("provisioner_stale_after", self.provisioner_stale_after)?;
        if self.db_pool_size < limits::DB_POOL_SIZE_MIN {
            return Err(SettingError {
                name: "db_pool_size",
                value: self.db_pool_size.to_string(),
                expected: "at least 5",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_follow_the_pool() {
        let mut s = Settings::default();
        assert_eq!(s.lifecycle_workers(), 2);
        s.db_pool_size = 5;
        assert_eq!(s.lifecycle_workers(), 1);
        s.db_pool_size = 100;
        assert_eq!(s.lifecycle_workers(), 10);
    }

    #[test]
    fn validation_names_the_setting() {
        let s = Settings { db_pool_size: 4, ..Settings::default() };
        assert_eq!(s.validate().unwrap_err().to_string(), "setting `db_pool_size` is 4, expected at least 5");
        let s = Settings { lifecycle_interval: Span::from_hours(2), ..Settings::default() };
        assert!(s.validate().unwrap_err().to_string().contains("lifecycle_interval"));
    }
}
