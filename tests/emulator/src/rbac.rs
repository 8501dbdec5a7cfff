//! Authentication by bearer token, and namespaced RBAC lite: per token, the verbs it may use on
//! which resources in which namespaces; everything else is 403 in the API server's words.

use crate::config::{Config, Identity};
use crate::kinds::Kind;
use crate::status::ApiError;
use axum::http::{HeaderMap, header};
use std::collections::BTreeMap;
use std::sync::RwLock;

pub struct Rbac {
    admin_token: String,
    anonymous_is_admin: bool,
    tokens: RwLock<BTreeMap<String, Identity>>,
}

/// Who is asking: `None` rules means the admin.
pub struct User {
    pub name: String,
    identity: Option<Identity>,
}

impl Rbac {
    pub fn new(config: &Config) -> Self {
        Rbac {
            admin_token: config.admin_token.clone(),
            anonymous_is_admin: config.anonymous_is_admin,
            tokens: RwLock::new(config.tokens.clone()),
        }
    }

    /// Adds or replaces what `token` may do (tests change RBAC while running).
    pub fn set(&self, token: &str, identity: Identity) {
        self.tokens
            .write()
            .unwrap()
            .insert(token.to_string(), identity);
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<User, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // kubectl (client-go) sends no token over plain HTTP: credential-less requests are the
        // admin unless the config says otherwise.
        let token = match token {
            Some(token) => token,
            None if self.anonymous_is_admin => {
                return Ok(User {
                    name: "emulator-admin".into(),
                    identity: None,
                });
            }
            None => return Err(ApiError::unauthorized()),
        };
        if token == self.admin_token {
            return Ok(User {
                name: "emulator-admin".into(),
                identity: None,
            });
        }
        let tokens = self.tokens.read().unwrap();
        let identity = tokens
            .get(token)
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        Ok(User {
            name: identity.user.clone(),
            identity: Some(identity),
        })
    }

    pub fn authorize(
        &self,
        user: &User,
        verb: &str,
        kind: &Kind,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<(), ApiError> {
        let Some(identity) = &user.identity else {
            return Ok(());
        };
        let any = |list: &[String], wanted: &str| list.iter().any(|x| x == "*" || x == wanted);
        let allowed = identity.rules.iter().any(|rule| {
            any(&rule.verbs, verb)
                && any(&rule.resources, resource)
                && namespace.is_none_or(|ns| any(&rule.namespaces, ns))
                && (namespace.is_some() || rule.namespaces.iter().any(|n| n == "*"))
        });
        if allowed {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                &user.name,
                verb,
                resource,
                kind.group,
                &kind.qualified(),
                namespace,
            ))
        }
    }
}
