//! `features`.

/// Prints the runtime-spec features JSON.
pub fn run() -> anyhow::Result<()> {
    let v = berth_runtime::features::features();
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
