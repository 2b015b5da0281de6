//! `CUSTODIAN__SECTION__KEY` environment overrides, merged into the file's
//! TOML before it is parsed.

use super::*;

/// The file with the environment overrides applied, as TOML text.
pub(super) fn apply_overrides(
    path: &Path,
    text: &str,
    overrides: &[(String, String)],
) -> Result<String, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    for (var, value) in overrides {
        let keys: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        set_path(&mut table, &keys, parse_env_value(value));
    }
    toml::to_string(&table).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        line: 0,
        key: override_names(overrides),
        message: e.to_string(),
    })
}

pub(super) fn override_names(overrides: &[(String, String)]) -> String {
    overrides
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `true`, `42`, `1.5` become typed values; anything else stays a string.
pub(super) fn parse_env_value(value: &str) -> toml::Value {
    #[derive(Deserialize)]
    struct Probe {
        v: toml::Value,
    }
    match toml::from_str::<Probe>(&format!("v = {value}")) {
        Ok(Probe { v }) if !v.is_table() && !v.is_datetime() => v,
        _ => toml::Value::String(value.to_owned()),
    }
}

pub(super) fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}
