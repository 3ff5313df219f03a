//! Typed identifiers and the seeded generator that makes them.
//!
//! Every id is a UUID (what the reference stores) wrapped in its own type, so a
//! workspace id can never be passed where a build id is expected. New ids come
//! from an [`IdGen`] seeded per replica and purpose: never from OS randomness, so
//! a simulated run names its objects the same way every time.

use std::fmt;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub const fn from_uuid(uuid: Uuid) -> Self {
                $name(uuid)
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(Uuid::from_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                $name(uuid)
            }
        }
    };
}

id_type!(UserId);
id_type!(TemplateId);
id_type!(VersionId);
id_type!(PresetId);
id_type!(WorkspaceId);
id_type!(BuildId);
id_type!(JobId);
id_type!(ProvisionerId);
id_type!(NotificationId);
id_type!(ChatId);

/// The system user that owns every unclaimed prebuild (the reference's fixed id).
pub const PREBUILDS_USER_ID: UserId = UserId(Uuid::from_bytes([
    0xc4, 0x2f, 0xdf, 0x75, 0x30, 0x97, 0x47, 0x1c, 0x8c, 0x33, 0xfb, 0x52, 0x45, 0x4d, 0x81, 0xc0,
]));

/// Name of the prebuilds system user.
pub const PREBUILDS_USER_NAME: &str = "prebuilds";

/// A deterministic source of version-4 UUIDs.
#[derive(Debug, Clone)]
pub struct IdGen {
    rng: ChaCha8Rng,
}

impl IdGen {
    pub fn from_seed(seed: u64) -> Self {
        IdGen { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// Derives a generator for one purpose of one replica, independent of the others.
    pub fn for_purpose(seed: u64, purpose: &str) -> Self {
        Self::from_seed(seed ^ crate::hash::fnv1_64(purpose.as_bytes()))
    }

    pub fn next_uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    pub fn next_id<T: From<Uuid>>(&mut self) -> T {
        T::from(self.next_uuid())
    }
}

/// An [`IdGen`] shared by the tasks of one replica. The lock is held only to
/// draw bytes, never across an await.
#[derive(Debug, Clone)]
pub struct SharedIds {
    inner: std::sync::Arc<std::sync::Mutex<IdGen>>,
}

impl SharedIds {
    pub fn new(ids: IdGen) -> Self {
        SharedIds { inner: std::sync::Arc::new(std::sync::Mutex::new(ids)) }
    }

    pub fn next<T: From<Uuid>>(&self) -> T {
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner()).next_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prebuilds_user_id_matches_reference() {
        assert_eq!(PREBUILDS_USER_ID.to_string(), "c42fdf75-3097-471c-8c33-fb52454d81c0");
    }

    #[test]
    fn id_gen_is_seeded() {
        let a: Vec<WorkspaceId> = {
            let mut g = IdGen::from_seed(7);
            (0..3).map(|_| g.next_id()).collect()
        };
        let b: Vec<WorkspaceId> = {
            let mut g = IdGen::from_seed(7);
            (0..3).map(|_| g.next_id()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
        assert_eq!(a[0].0.get_version_num(), 4);
        let mut other = IdGen::from_seed(8);
        assert_ne!(a[0], other.next_id::<WorkspaceId>());
    }
}
