//! Newtype ids. Every id is a string on the wire and in the database (TEXT primary keys),
//! but the type system keeps a `CallId` from being passed where a `WorkspaceId` is wanted.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// A call (phone or web), `calls.id`.
    CallId
);
string_id!(
    /// A tenant, `workspaces.id`.
    WorkspaceId
);
string_id!(
    /// A voice agent, `voice_agents.id`.
    AgentId
);
string_id!(
    /// A client user, `client_users.id`.
    UserId
);
string_id!(
    /// A platform admin, `platform_admins.id`.
    AdminId
);
string_id!(
    /// A phone number row, `phone_numbers.id`.
    PhoneNumberId
);
