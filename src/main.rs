use clap::{CommandFactory, FromArgMatches};
use poscloud::cli::{Cli, Command};
use poscloud::commands::{self, Ctx};
use poscloud::error::Error;
use tracing_subscriber::EnvFilter;

fn main() {
    // The derived definitions with the examples attached (cli::command).
    let cli =
        Cli::from_arg_matches(&poscloud::cli::command().get_matches()).unwrap_or_else(|e| e.exit());
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "poscloud=debug,warn",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("POSCLOUD_LOG").unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();

    let json = cli.global.output == poscloud::cli::Output::Json;
    let ctx = Ctx::new(cli.global);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result: Result<(), Error> = runtime.block_on(async {
        match &cli.command {
            Command::Provision(a) => commands::provision::run(&ctx, a).await,
            Command::Plan(a) => commands::plan::run(&ctx, a).await,
            Command::Status(a) => commands::status::run(&ctx, a).await,
            Command::List => commands::list::run(&ctx).await,
            Command::Teardown(a) => commands::teardown::run(&ctx, a).await,
            Command::Pos { command } => commands::pos::run(&ctx, command).await,
            Command::Host { command } => commands::host::run(&ctx, command).await,
            Command::Image { command } => commands::image::run(&ctx, command).await,
            Command::Vpn { command } => commands::vpn::run(&ctx, command).await,
            Command::Cutover { command } => commands::cutover::run(&ctx, command).await,
            Command::Report { command } => commands::report::run(&ctx, command).await,
            Command::UserData(a) => commands::userdata::run(&ctx, a),
            Command::Completions { shell } => {
                clap_complete::generate(
                    *shell,
                    &mut Cli::command(),
                    "poscloud",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
            Command::Man(a) => commands::man::run(&ctx, a),
        }
    });
    if let Err(e) = result {
        let code = e.exit_code();
        if json && !matches!(e, Error::Reported(_)) {
            println!(
                "{}",
                serde_json::json!({"error": e.to_string(), "exit_code": code})
            );
        }
        eprintln!("error: {e}");
        std::process::exit(code);
    }
}
