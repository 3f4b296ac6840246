//! Users: accounts, their names and password hashes, and erasure.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::User;
use crate::domain::UserId;

use super::Result;

#[async_trait(?Send)]
pub trait UserRepo {
    async fn user_by_id(&mut self, id: &UserId) -> Result<Option<User>>;
    /// By `Username::key` (the case-insensitive form).
    async fn user_by_username_key(&mut self, key: &str) -> Result<Option<User>>;
    async fn all_users(&mut self) -> Result<Vec<User>>;
    /// `username_key` and `skeleton` are `Username::key` and `Username::skeleton`.
    async fn insert_user(&mut self, user: &User, username_key: &str, skeleton: &str) -> Result<()>;
    /// Whether an existing user's name has this confusable skeleton.
    async fn username_skeleton_taken(&mut self, skeleton: &str) -> Result<bool>;
    async fn set_password_hash(&mut self, user_id: &UserId, hash: &str) -> Result<()>;
    /// Marks the user disabled; `false` if it already was (or does not exist).
    async fn set_disabled(&mut self, user_id: &UserId, now: Millis) -> Result<bool>;
    /// Deletes the user with its sessions, tokens and events, and forgets them as the
    /// actor of other users' events; `false` if none. The sessions still live at `now`
    /// enter the revocation log first: their access tokens outlive the rows.
    async fn delete_user(&mut self, user_id: &UserId, now: Millis) -> Result<bool>;
    /// Once this transaction commits, remove what it deleted from the store's files too
    /// before the write returns (erasure: deleted rows must not linger in free pages or
    /// a log). SQLite: deleted content is zeroed as it goes (`secure_delete`), and this
    /// asks for a WAL checkpoint that truncates the log.
    async fn scrub_after_commit(&mut self) -> Result<()>;
}
