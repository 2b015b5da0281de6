//! `[console]` and `[console.oidc]`.

use super::*;
use crate::domain::access::Role;

impl Validator<'_> {
    pub(in crate::config) fn console(
        &self,
        raw: &RawConsole,
        admin_listen: SocketAddr,
    ) -> Result<ConsoleConfig, ConfigError> {
        let minute = Duration::from_secs(60);
        if raw.idle_timeout < minute || raw.absolute_timeout < minute {
            return self.err(
                None,
                "console.idle_timeout",
                "console timeouts are at least one minute",
            );
        }
        if raw.idle_timeout > raw.absolute_timeout {
            return self.err(
                None,
                "console.idle_timeout",
                "must not exceed console.absolute_timeout",
            );
        }
        let oidc = raw.oidc.as_ref().map(|o| self.oidc(o)).transpose()?;
        if raw.enabled && !raw.token_sign_in && oidc.is_none() {
            return self.err(
                None,
                "console.token_sign_in",
                "with token sign-in off, [console.oidc] is the only way in: configure it",
            );
        }
        Ok(ConsoleConfig {
            enabled: raw.enabled,
            idle_timeout: raw.idle_timeout,
            absolute_timeout: raw.absolute_timeout,
            secure_cookies: raw
                .secure_cookies
                .unwrap_or(!admin_listen.ip().is_loopback()),
            token_sign_in: raw.token_sign_in,
            oidc,
        })
    }

    fn oidc(&self, raw: &RawOidc) -> Result<OidcConfig, ConfigError> {
        // https, or http to a loopback address (a provider or a console on
        // this machine): the client secret, the code and the provider's keys
        // must not cross a network in clear.
        let http_url = |key: &str, value: &Spanned<String>| match Url::parse(value.get_ref()) {
            Ok(u) if u.scheme() == "https" && u.host().is_some() => Ok(u),
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => Ok(u),
            _ => self.err(
                Some(value.span()),
                key,
                "must be an https URL (http only to a loopback address)",
            ),
        };
        http_url("console.oidc.issuer", &raw.issuer)?;
        let issuer = raw.issuer.get_ref().clone();
        let redirect_url = http_url("console.oidc.redirect_url", &raw.redirect_url)?;
        if redirect_url.path() != OIDC_CALLBACK_PATH || redirect_url.query().is_some() {
            return self.err(
                Some(raw.redirect_url.span()),
                "console.oidc.redirect_url",
                format!(
                    "must be the admin listener's {OIDC_CALLBACK_PATH} as the browser reaches it"
                ),
            );
        }
        if raw.client_id.trim().is_empty() || raw.claim.get_ref().trim().is_empty() {
            return self.err(
                Some(raw.claim.span()),
                "console.oidc",
                "client_id and claim must not be empty",
            );
        }
        let client_secret = self.secret("console.oidc.client_secret", &raw.client_secret)?;
        if raw.principals.is_empty() {
            return self.err(
                Some(raw.claim.span()),
                "console.oidc.principals",
                "map at least one claim value to a principal: nobody could sign in",
            );
        }
        let principals = raw
            .principals
            .iter()
            .map(|m| {
                let role = Role::parse(m.role.get_ref()).map_or_else(
                    || {
                        self.err(
                            Some(m.role.span()),
                            "console.oidc.principals.role",
                            "is admin, reviewer, contractor or auditor",
                        )
                    },
                    Ok,
                )?;
                if m.value.get_ref().is_empty() || m.principal.get_ref().trim().is_empty() {
                    return self.err(
                        Some(m.principal.span()),
                        "console.oidc.principals",
                        "value and principal must not be empty",
                    );
                }
                Ok(ClaimMapping {
                    value: m.value.get_ref().clone(),
                    principal: m.principal.get_ref().trim().to_owned(),
                    role,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OidcConfig {
            issuer,
            client_id: raw.client_id.trim().to_owned(),
            client_secret,
            redirect_url,
            scopes: raw
                .scopes
                .iter()
                .filter(|s| s.as_str() != "openid")
                .cloned()
                .collect(),
            claim: raw.claim.get_ref().trim().to_owned(),
            display_name: raw
                .display_name
                .clone()
                .unwrap_or_else(|| "single sign-on".to_owned()),
            principals,
        })
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
