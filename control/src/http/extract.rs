//! Auth and tenancy as extractors, so a handler cannot forget them: a handler that takes a
//! `WorkspaceMember` only runs for a member of the workspace in its path.

use super::error::ApiError;
use crate::auth::tokens::{Audience, Claims};
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use std::collections::HashMap;
use std::net::SocketAddr;

/// The client's address, for rate limits and audit logs.
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The last header line: a proxy may append its own line rather than extend one.
        let forwarded_for = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(vocalized_shared::client_ip::client_ip(
            forwarded_for,
            state.config.trust_forwarded_for,
            peer,
        )))
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Verifies the bearer token for `aud`; a token of the other audience is a 403 (it is a
/// valid login, just not for this API), anything else wrong is a 401.
fn claims(parts: &Parts, state: &AppState, aud: Audience) -> Result<Claims, ApiError> {
    let token = bearer(parts).ok_or(ApiError::Unauthorized("missing bearer token"))?;
    if let Some(claims) = state.keys.verify(token, aud) {
        return Ok(claims);
    }
    let other = match aud {
        Audience::User => Audience::Admin,
        Audience::Admin => Audience::User,
    };
    if state.keys.verify(token, other).is_some() {
        return Err(ApiError::Forbidden(match aud {
            Audience::User => "platform admin tokens cannot use the client API",
            Audience::Admin => "client tokens cannot use the admin API",
        }));
    }
    Err(ApiError::Unauthorized("invalid or expired token"))
}

/// A signed-in, active client user whose session is live.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub id: String,
    pub email: String,
    pub name: String,
    pub session_id: String,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let claims = claims(parts, state, Audience::User)?;
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT u.id, u.email, u.name FROM client_users u
             WHERE u.id = $1 AND u.is_active = 1
               AND EXISTS (SELECT 1 FROM refresh_tokens r
                           WHERE r.session_id = $2 AND r.subject_type = 'user'
                             AND r.revoked_at IS NULL)",
        )
        .bind(&claims.sub)
        .bind(&claims.sid)
        .fetch_optional(&state.db.pool)
        .await?;
        let (id, email, name) = row.ok_or(ApiError::Unauthorized("session has ended"))?;
        Ok(CurrentUser {
            id,
            email,
            name,
            session_id: claims.sid,
        })
    }
}

/// Platform roles, least to most powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdminRole {
    /// Read-only access for customer support.
    Support,
    /// Manages workspaces and users.
    Admin,
    /// Everything, including platform settings and other admins.
    SuperAdmin,
}

impl AdminRole {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "support" => Some(Self::Support),
            "admin" => Some(Self::Admin),
            "super_admin" => Some(Self::SuperAdmin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Support => "support",
            Self::Admin => "admin",
            Self::SuperAdmin => "super_admin",
        }
    }
}

/// A signed-in, active platform admin whose session is live.
#[derive(Clone, Debug)]
pub struct CurrentAdmin {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: AdminRole,
    pub session_id: String,
}

impl CurrentAdmin {
    pub fn require(&self, role: AdminRole) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "your platform role does not allow this",
            ))
        }
    }
}

impl FromRequestParts<AppState> for CurrentAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let claims = claims(parts, state, Audience::Admin)?;
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT a.id, a.email, a.name, a.role FROM platform_admins a
             WHERE a.id = $1 AND a.is_active = 1
               AND EXISTS (SELECT 1 FROM refresh_tokens r
                           WHERE r.session_id = $2 AND r.subject_type = 'admin'
                             AND r.revoked_at IS NULL)",
        )
        .bind(&claims.sub)
        .bind(&claims.sid)
        .fetch_optional(&state.db.pool)
        .await?;
        let (id, email, name, role) = row.ok_or(ApiError::Unauthorized("session has ended"))?;
        let role = AdminRole::parse(&role)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown admin role {role}")))?;
        Ok(CurrentAdmin {
            id,
            email,
            name,
            role,
            session_id: claims.sid,
        })
    }
}

/// Workspace roles, least to most powerful (seed §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkspaceRole {
    /// Read-only access.
    Viewer,
    /// Views calls and analytics; changes no settings.
    Member,
    /// Manages agents, numbers, integrations, members and billing.
    Admin,
    /// Full control, including deleting the workspace.
    Owner,
}

impl WorkspaceRole {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }
}

/// A member of the workspace named by the `{workspace_id}` path segment. Non-members get
/// the same 404 as for a workspace that does not exist, so ids cannot be probed.
#[derive(Clone, Debug)]
pub struct WorkspaceMember {
    pub user: CurrentUser,
    pub workspace_id: String,
    pub role: WorkspaceRole,
}

impl WorkspaceMember {
    pub fn require(&self, role: WorkspaceRole) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(match role {
                WorkspaceRole::Owner => "only the workspace owner may do this",
                WorkspaceRole::Admin => "only workspace owners and admins may do this",
                _ => "your workspace role does not allow this",
            }))
        }
    }
}

impl FromRequestParts<AppState> for WorkspaceMember {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("workspace"))?;
        let workspace_id = params
            .get("workspace_id")
            .cloned()
            .ok_or(ApiError::NotFound("workspace"))?;
        let role: Option<(String,)> = sqlx::query_as(
            "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
        )
        .bind(&workspace_id)
        .bind(&user.id)
        .fetch_optional(&state.db.pool)
        .await?;
        let role = role
            .and_then(|(r,)| WorkspaceRole::parse(&r))
            .ok_or(ApiError::NotFound("workspace"))?;
        Ok(WorkspaceMember {
            user,
            workspace_id,
            role,
        })
    }
}
