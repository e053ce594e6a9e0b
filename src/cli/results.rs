//! `zos-perf get` and `zos-perf get-all`: the stored results, as JSON or
//! rendered for a person (`--human`).

use zos_perf::config::Config;
use zos_perf::store;

use super::error::{CliError, Exit};
use super::{connect, decode, human, print_result, task_name};

/// `get NAME`: one task's stored result.
pub async fn get(
    config: &Config,
    default_redis: &str,
    name: &str,
    as_human: bool,
) -> Result<(), CliError> {
    let name = task_name(name)?;
    let mut conn = connect(config, default_redis).await?;
    let raw = store::read_raw(&mut conn, name)
        .await?
        .ok_or_else(|| CliError::msg(Exit::NotFound, format!("{name}: result not found")))?;
    let result = decode(name, &raw)?;
    if as_human {
        out!("{}", human::render(&result, chrono::Utc::now().timestamp()));
        Ok(())
    } else {
        print_result(&result)
    }
}

/// `get-all`: every stored result as one JSON array, in task order.
pub async fn get_all(config: &Config, default_redis: &str, as_human: bool) -> Result<(), CliError> {
    let mut conn = connect(config, default_redis).await?;
    let all = store::read_all(&mut conn).await?;
    if as_human {
        let now = chrono::Utc::now().timestamp();
        let text: Vec<String> = all.iter().map(|r| human::render(r, now)).collect();
        out!("{}", text.join("\n"));
        return Ok(());
    }
    outln!("{}", super::json(&all)?);
    Ok(())
}
