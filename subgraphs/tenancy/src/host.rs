//! A database host: the cluster a tenant database lives on.
//!
//! The registry stores a host as a URL — `postgres://user@host:port` for a
//! shared PostgreSQL cluster or `sqlite://dir` for embedded files — and every
//! caller goes through [`DatabaseHost`] to create, reach or drop a database
//! there, so tenants of one app can sit on different kinds of host.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};
use tokio::sync::OnceCell;
use url::Url;

/// One database host, with a lazily opened administrative connection.
#[derive(Debug)]
pub struct DatabaseHost {
    kind: HostKind,
    admin: OnceCell<DatabaseConnection>,
}

#[derive(Clone, Debug)]
enum HostKind {
    /// Base URL without a database path, e.g. `postgres://u@h:5432?sslmode=x`.
    Postgres(Url),
    /// A directory holding one `<name>.db` file per database.
    Sqlite(PathBuf),
}

/// Pool settings for one connection.
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    /// Most connections this pool opens.
    pub max_connections: u32,
    /// Connections idle this long are closed.
    pub idle: Duration,
}

impl DatabaseHost {
    /// Parses a host URL. A database path in a PostgreSQL URL is ignored: the
    /// host names a cluster, the database is chosen per tenant.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let url = Url::parse(text.trim()).with_context(|| format!("not a URL: {text:?}"))?;
        let kind = match url.scheme() {
            "postgres" | "postgresql" => {
                if url.host_str().is_none_or(str::is_empty) {
                    bail!("a postgres URL needs a host: {text:?}");
                }
                let mut base = url.clone();
                base.set_path("");
                HostKind::Postgres(base)
            }
            "sqlite" => {
                let rest = text.trim().trim_start_matches("sqlite://");
                let dir = rest.split('?').next().unwrap_or_default();
                if dir.is_empty() {
                    bail!("a sqlite host needs a directory: sqlite://DIR");
                }
                HostKind::Sqlite(PathBuf::from(dir))
            }
            other => bail!("unsupported database scheme {other:?} (use postgres:// or sqlite://)"),
        };
        Ok(Self {
            kind,
            admin: OnceCell::new(),
        })
    }

    /// The URL stored in registries and shown in logs: the host's identity,
    /// without any password (credentials come from configuration).
    pub fn url(&self) -> String {
        match &self.kind {
            HostKind::Postgres(base) => {
                let mut identity = base.clone();
                let _ = identity.set_password(None);
                identity.to_string().trim_end_matches('/').to_owned()
            }
            HostKind::Sqlite(dir) => format!("sqlite://{}", dir.display()),
        }
    }

    /// The connection URL of database `name` on this host.
    pub fn database_url(&self, name: &str) -> String {
        match &self.kind {
            HostKind::Postgres(base) => {
                let mut url = base.clone();
                url.set_path(name);
                url.to_string()
            }
            HostKind::Sqlite(dir) => format!(
                "sqlite://{}?mode=rwc",
                dir.join(format!("{name}.db")).display()
            ),
        }
    }

    /// Whether this is a PostgreSQL host (advisory locks, `pg_database`).
    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, HostKind::Postgres(_))
    }

    /// Creates database `name` unless it exists; returns whether it created
    /// it. Safe to repeat and to race: `CREATE DATABASE` cannot run inside a
    /// transaction, so a concurrent creator's "already exists" counts as done.
    pub async fn ensure_database(&self, name: &str) -> anyhow::Result<bool> {
        check_identifier(name)?;
        match &self.kind {
            HostKind::Sqlite(dir) => {
                let path = dir.join(format!("{name}.db"));
                if path.exists() {
                    return Ok(false);
                }
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                // Opening with mode=rwc creates the file.
                self.connect(
                    name,
                    PoolOptions {
                        max_connections: 1,
                        idle: Duration::from_secs(1),
                    },
                )
                .await?
                .close()
                .await?;
                Ok(true)
            }
            HostKind::Postgres(_) => {
                if self.database_exists(name).await? {
                    return Ok(false);
                }
                let admin = self.admin().await?;
                let create = format!("CREATE DATABASE \"{name}\"");
                match admin.execute_unprepared(&create).await {
                    Ok(_) => Ok(true),
                    Err(error) if is_duplicate_database(&error) => Ok(false),
                    Err(error) => Err(error).with_context(|| format!("CREATE DATABASE {name}")),
                }
            }
        }
    }

    /// Whether database `name` exists on this host.
    pub async fn database_exists(&self, name: &str) -> anyhow::Result<bool> {
        match &self.kind {
            HostKind::Sqlite(dir) => Ok(dir.join(format!("{name}.db")).exists()),
            HostKind::Postgres(_) => {
                let admin = self.admin().await?;
                let row = admin
                    .query_one_raw(Statement::from_sql_and_values(
                        admin.get_database_backend(),
                        "SELECT 1 AS present FROM pg_database WHERE datname = $1",
                        [name.into()],
                    ))
                    .await
                    .context("looking up pg_database")?;
                Ok(row.is_some())
            }
        }
    }

    /// Drops database `name` if it exists, closing other sessions on it.
    pub async fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        check_identifier(name)?;
        match &self.kind {
            HostKind::Sqlite(dir) => {
                let path = dir.join(format!("{name}.db"));
                if path.exists() {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
                Ok(())
            }
            HostKind::Postgres(_) => {
                let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                self.admin()
                    .await?
                    .execute_unprepared(&drop)
                    .await
                    .with_context(|| drop.clone())?;
                Ok(())
            }
        }
    }

    /// Opens a pool on database `name`.
    pub async fn connect(
        &self,
        name: &str,
        pool: PoolOptions,
    ) -> anyhow::Result<DatabaseConnection> {
        let mut options = ConnectOptions::new(self.database_url(name));
        options
            .max_connections(pool.max_connections)
            .min_connections(0)
            .idle_timeout(pool.idle)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(10))
            .sqlx_logging(false)
            // Embedded files: readers never block the writer (WAL), and a
            // writer waits for another instead of failing at once.
            .map_sqlx_sqlite_opts(|sqlite| {
                sqlite
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
            });
        Database::connect(options)
            .await
            .with_context(|| format!("connecting to database {name}"))
    }

    /// Opens a pool on a control database, creating and migrating it first.
    /// Start-up calls this first, so a server that does not answer is tried
    /// a few times with backoff, then reported naming `DATABASE_URL`.
    pub async fn open_control_database<M: migration::MigratorTrait>(
        &self,
        name: &str,
    ) -> anyhow::Result<DatabaseConnection> {
        let mut attempt = 0;
        loop {
            match self.try_open_control_database::<M>(name).await {
                Ok(db) => return Ok(db),
                Err(error) if attempt + 1 < crate::bus::STARTUP_ATTEMPTS => {
                    tracing::warn!(target: "tenancy::host", database = name, attempt = attempt + 1, error = format!("{error:#}"), "database not reachable yet");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
                Err(error) => {
                    return Err(error.context(format!(
                        "cannot open database {name} at DATABASE_URL={}",
                        self.url()
                    )));
                }
            }
        }
    }

    async fn try_open_control_database<M: migration::MigratorTrait>(
        &self,
        name: &str,
    ) -> anyhow::Result<DatabaseConnection> {
        self.ensure_database(name).await?;
        let pool = PoolOptions {
            max_connections: 4,
            idle: Duration::from_secs(60),
        };
        let db = self.connect(name, pool).await?;
        M::up(&db, None)
            .await
            .with_context(|| format!("migrating {name}"))?;
        Ok(db)
    }

    async fn admin(&self) -> anyhow::Result<&DatabaseConnection> {
        self.admin
            .get_or_try_init(|| async {
                self.connect(
                    "postgres",
                    PoolOptions {
                        max_connections: 2,
                        idle: Duration::from_secs(30),
                    },
                )
                .await
            })
            .await
    }
}

/// Database names are interpolated into DDL, so only plain identifiers pass.
fn check_identifier(name: &str) -> anyhow::Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        bail!("not a plain database name: {name:?}");
    }
    Ok(())
}

/// `42P04 duplicate_database`, or the unique violation on `pg_database` that
/// a concurrent `CREATE DATABASE` of the same name raises.
fn is_duplicate_database(error: &DbErr) -> bool {
    let code = match error {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(inner))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(inner)) => inner
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned()),
        _ => None,
    };
    matches!(code.as_deref(), Some("42P04") | Some("23505"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_hosts_drop_any_database_path() {
        let host =
            DatabaseHost::parse("postgres://postgres@127.0.0.1:5432/ignored?sslmode=disable")
                .unwrap();
        assert_eq!(
            host.database_url("fact_x"),
            "postgres://postgres@127.0.0.1:5432/fact_x?sslmode=disable"
        );
        assert_eq!(
            host.url(),
            "postgres://postgres@127.0.0.1:5432?sslmode=disable"
        );
    }

    #[test]
    fn passwords_stay_out_of_registries_and_logs() {
        let host = DatabaseHost::parse("postgres://app:s3cret@db:5432").unwrap();
        assert_eq!(host.url(), "postgres://app@db:5432");
        assert!(host.database_url("x").contains("s3cret"));
    }

    #[test]
    fn sqlite_hosts_keep_one_file_per_database() {
        let host = DatabaseHost::parse("sqlite://./data").unwrap();
        assert_eq!(
            host.database_url("fact_x"),
            "sqlite://./data/fact_x.db?mode=rwc"
        );
    }

    #[test]
    fn malformed_hosts_are_refused_with_a_reason() {
        for bad in ["", "mysql://h", "postgres://", "not a url", "sqlite://"] {
            assert!(DatabaseHost::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn only_plain_identifiers_reach_ddl() {
        assert!(check_identifier("fact_abc_123").is_ok());
        assert!(check_identifier("x\"; DROP DATABASE y; --").is_err());
        assert!(check_identifier(&"a".repeat(64)).is_err());
    }
}
