//! `npm run check-config`'s checker: reads the JSON that scripts/check-config.mjs writes on
//! stdin (a wrangler file's vars and bindings, read by wrangler, and the secrets given), runs
//! the gateway's own configuration check (`edge_auth_proxy::config::check`), prints every
//! problem on a line of its own, and exits 1 if there is any.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut text = String::new();
    if std::io::stdin().read_to_string(&mut text).is_err() {
        eprintln!("check-config: could not read its input");
        return ExitCode::from(2);
    }
    // The input is the script's own JSON; a parse error is a bug there, and serde's message
    // could quote a value, so it is not shown.
    let Ok(input) = serde_json::from_str::<edge_auth_proxy::config::check::Input>(&text) else {
        eprintln!("check-config: its input is not the JSON scripts/check-config.mjs writes");
        return ExitCode::from(2);
    };
    let report = edge_auth_proxy::config::check::run(&input);
    for line in &report.lines {
        println!("{line}");
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
