//! Workspace members and invitations. Owners and admins invite (by email, with a
//! single-use token that expires in 7 days), change roles and remove members; only the
//! owner changes or removes an admin; anyone but the owner may leave. The owner's
//! membership cannot be changed here. An invitation is only as good as its sender's
//! standing: it dies when they leave or drop below admin.

use super::auth::Problems;
use super::error::{ApiError, ApiResult, is_unique_violation};
use super::extract::{CurrentUser, WorkspaceMember, WorkspaceRole};
use super::json::Json;
use super::workspaces::members_of;
use crate::email;
use crate::state::AppState;
use crate::util::{new_id, normalize_email, now_ms, random_token, sha256_hex};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::json;

const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/workspaces/{workspace_id}/members",
            get(list).post(invite),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/members/{user_id}",
            put(change_role).delete(remove),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/invitations/{invitation_id}",
            delete(revoke_invitation),
        )
        .route("/api/v1/invitations/{token}", get(peek_invitation))
        .route(
            "/api/v1/invitations/{token}/accept",
            post(accept_invitation),
        )
}

#[derive(Serialize, sqlx::FromRow)]
struct InvitationView {
    id: String,
    email: String,
    role: String,
    expires_at: i64,
    created_at: i64,
}

async fn list(
    State(state): State<AppState>,
    member: WorkspaceMember,
) -> ApiResult<impl IntoResponse> {
    let members = members_of(&state, &member.workspace_id).await?;
    // Pending invitations name people who are not members yet: admins only.
    let invitations: Vec<InvitationView> = if member.role >= WorkspaceRole::Admin {
        sqlx::query_as(
            "SELECT id, email, role, expires_at, created_at FROM invitations
             WHERE workspace_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2
             ORDER BY created_at",
        )
        .bind(&member.workspace_id)
        .bind(now_ms())
        .fetch_all(&state.db.pool)
        .await?
    } else {
        Vec::new()
    };
    Ok(axum::Json(
        json!({ "members": members, "invitations": invitations }),
    ))
}

fn parse_invitable_role(problems: &mut Problems, role: Option<&str>) -> Option<WorkspaceRole> {
    match role.map(WorkspaceRole::parse) {
        None => {
            problems.add("role", "is required");
            None
        }
        Some(Some(r)) if r != WorkspaceRole::Owner => Some(r),
        Some(_) => {
            problems.add("role", "must be one of admin, member, viewer");
            None
        }
    }
}

#[derive(Deserialize)]
struct InviteBody {
    email: Option<String>,
    role: Option<String>,
}

async fn invite(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Json(body): Json<InviteBody>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let mut problems = Problems::default();
    let raw = problems.required("email", &body.email).to_owned();
    let email = normalize_email(&raw);
    if !raw.is_empty() && email.is_none() {
        problems.add("email", "is not a valid email address");
    }
    let role = parse_invitable_role(&mut problems, body.role.as_deref());
    problems.into_result()?;
    let (email, role) = (email.expect("checked"), role.expect("checked"));

    let (already,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM workspace_members m JOIN client_users u ON u.id = m.user_id
         WHERE m.workspace_id = $1 AND u.email = $2",
    )
    .bind(&member.workspace_id)
    .bind(&email)
    .fetch_one(&state.db.pool)
    .await?;
    if already > 0 {
        return Err(ApiError::conflict(
            "already_member",
            "that person is already a member",
        ));
    }
    let (workspace_name,): (String,) = sqlx::query_as("SELECT name FROM workspaces WHERE id = $1")
        .bind(&member.workspace_id)
        .fetch_one(&state.db.pool)
        .await?;

    let now = now_ms();
    let token = random_token();
    let id = new_id("inv");
    let mut tx = state.db.pool.begin().await?;
    // A new invitation replaces any pending one for the same address.
    sqlx::query(
        "UPDATE invitations SET revoked_at = $1
         WHERE workspace_id = $2 AND email = $3 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(&member.workspace_id)
    .bind(&email)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO invitations (id, workspace_id, email, role, token_hash, invited_by, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&member.workspace_id)
    .bind(&email)
    .bind(role.as_str())
    .bind(sha256_hex(&token))
    .bind(&member.user.id)
    .bind(now + INVITATION_TTL_MS)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let link = format!("{}/invitations/{token}", state.config.public_url);
    email::queue(
        &mut tx,
        &state.config.master_key,
        &email,
        &format!("You are invited to {workspace_name} on Vocalized"),
        &format!(
            "{} invited you to join {workspace_name} as {}.\n\nAccept: {link}\n(or POST /api/v1/invitations/{token}/accept while signed in as {email})\n",
            member.user.name,
            role.as_str()
        ),
        "invitation",
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "invitation": {
            "id": id, "email": email, "role": role.as_str(), "expires_at": now + INVITATION_TTL_MS,
        }})),
    ))
}

/// The target's current role; 404 if they are not a member of this workspace.
async fn role_of(state: &AppState, workspace_id: &str, user_id: &str) -> ApiResult<WorkspaceRole> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(workspace_id)
    .bind(user_id)
    .fetch_optional(&state.db.pool)
    .await?;
    row.and_then(|(r,)| WorkspaceRole::parse(&r))
        .ok_or(ApiError::NotFound("member"))
}

#[derive(Deserialize)]
struct RoleBody {
    role: Option<String>,
}

async fn change_role(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, user_id)): Path<(String, String)>,
    Json(body): Json<RoleBody>,
) -> ApiResult<impl IntoResponse> {
    member.require(WorkspaceRole::Admin)?;
    let mut problems = Problems::default();
    let role = parse_invitable_role(&mut problems, body.role.as_deref());
    problems.into_result()?;
    let role = role.expect("checked");
    let current = role_of(&state, &member.workspace_id, &user_id).await?;
    if current == WorkspaceRole::Owner {
        return Err(ApiError::Forbidden("the owner's role cannot be changed"));
    }
    if current == WorkspaceRole::Admin && member.role != WorkspaceRole::Owner {
        return Err(ApiError::Forbidden(
            "only the owner can change an admin's role",
        ));
    }
    let mut tx = state.db.pool.begin().await?;
    sqlx::query("UPDATE workspace_members SET role = $1 WHERE workspace_id = $2 AND user_id = $3")
        .bind(role.as_str())
        .bind(&member.workspace_id)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    if role < WorkspaceRole::Admin {
        revoke_invitations_from(&mut tx, &member.workspace_id, &user_id).await?;
    }
    tx.commit().await?;
    Ok(axum::Json(
        json!({ "member": { "user_id": user_id, "role": role.as_str() } }),
    ))
}

async fn remove(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let leaving = user_id == member.user.id;
    if !leaving {
        member.require(WorkspaceRole::Admin)?;
    }
    let current = role_of(&state, &member.workspace_id, &user_id).await?;
    if current == WorkspaceRole::Owner {
        return Err(ApiError::Forbidden(
            "the owner cannot be removed; delete the workspace instead",
        ));
    }
    if !leaving && current == WorkspaceRole::Admin && member.role != WorkspaceRole::Owner {
        return Err(ApiError::Forbidden("only the owner can remove an admin"));
    }
    let mut tx = state.db.pool.begin().await?;
    sqlx::query("DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2")
        .bind(&member.workspace_id)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
    revoke_invitations_from(&mut tx, &member.workspace_id, &user_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An invitation carries its sender's authority: when the sender leaves, is removed or
/// drops below admin, their pending invitations go too (L3). Acceptance rechecks as well
/// (`pending`), for invitations that predate this rule.
async fn revoke_invitations_from(
    conn: &mut sqlx::AnyConnection,
    workspace_id: &str,
    inviter_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE invitations SET revoked_at = $1
         WHERE workspace_id = $2 AND invited_by = $3 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(workspace_id)
    .bind(inviter_id)
    .execute(conn)
    .await?;
    Ok(())
}

async fn revoke_invitation(
    State(state): State<AppState>,
    member: WorkspaceMember,
    Path((_, invitation_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    member.require(WorkspaceRole::Admin)?;
    let revoked = sqlx::query(
        "UPDATE invitations SET revoked_at = $1
         WHERE id = $2 AND workspace_id = $3 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(&invitation_id)
    .bind(&member.workspace_id)
    .execute(&state.db.pool)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Err(ApiError::NotFound("invitation"));
    }
    Ok(StatusCode::NO_CONTENT)
}

type PendingInvitation = (String, String, String, String, i64, String);

async fn pending(state: &AppState, token: &str) -> ApiResult<PendingInvitation> {
    sqlx::query_as(
        "SELECT i.id, i.workspace_id, i.email, i.role, i.expires_at, w.name
         FROM invitations i JOIN workspaces w ON w.id = i.workspace_id
         WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > $2
           AND EXISTS (SELECT 1 FROM workspace_members s
                       WHERE s.workspace_id = i.workspace_id AND s.user_id = i.invited_by
                         AND s.role IN ('admin', 'owner'))",
    )
    .bind(sha256_hex(token))
    .bind(now_ms())
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(ApiError::NotFound("invitation"))
}

/// What an invitee sees before accepting (no sign-in needed: the token is the secret).
async fn peek_invitation(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (_, workspace_id, email, role, expires_at, workspace_name) =
        pending(&state, &token).await?;
    Ok(axum::Json(json!({ "invitation": {
        "workspace_id": workspace_id, "workspace_name": workspace_name,
        "email": email, "role": role, "expires_at": expires_at,
    }})))
}

async fn accept_invitation(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(token): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (id, workspace_id, email, role, _, workspace_name) = pending(&state, &token).await?;
    if email != user.email {
        return Err(ApiError::Forbidden(
            "this invitation was sent to a different email address",
        ));
    }
    let now = now_ms();
    let mut tx = state.db.pool.begin().await?;
    let claimed = sqlx::query(
        "UPDATE invitations SET accepted_at = $1 WHERE id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(&id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed != 1 {
        return Err(ApiError::NotFound("invitation"));
    }
    let invited_by: (Option<String>,) =
        sqlx::query_as("SELECT invited_by FROM invitations WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
    let joined = sqlx::query(
        "INSERT INTO workspace_members (workspace_id, user_id, role, invited_by, joined_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&workspace_id)
    .bind(&user.id)
    .bind(&role)
    .bind(invited_by.0)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match joined {
        Err(e) if is_unique_violation(&e) => {
            return Err(ApiError::conflict(
                "already_member",
                "you are already a member",
            ));
        }
        other => {
            other?;
        }
    }
    tx.commit().await?;
    Ok(axum::Json(json!({
        "workspace": { "id": workspace_id, "name": workspace_name },
        "role": role,
    })))
}
