use clap::{CommandFactory, FromArgMatches};
use poscloud::cli::{Cli, Command};
use poscloud::commands::{self, Ctx};
use poscloud::error::Error;
use tracing_subscriber::EnvFilter;

/// The command thread's stack (virtual memory: only what is used is touched).
const RUN_STACK: usize = 64 * 1024 * 1024;

fn main() {
    // The derived definitions with the examples attached (cli::command).
    let cli = poscloud::cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| {
            // With --detailed-exitcode every error exits 1, bad arguments too (as Terraform).
            if e.use_stderr() && std::env::args_os().any(|a| a == "--detailed-exitcode") {
                let _ = e.print();
                std::process::exit(poscloud::error::EXIT_FAILURE);
            }
            e.exit()
        });
    let detailed = cli.command.detailed_exitcode();
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "poscloud=debug,warn",
        _ => "debug",
    };
    let log = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("POSCLOUD_LOG").unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        // No colour codes in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // Its fallback for a failed write is eprintln!, which panics when stderr is gone.
        .log_internal_errors(false);
    // -v lines (one per AWS call) carry their time; warnings alone do not need it.
    if cli.global.verbose > 0 {
        log.init();
    } else {
        log.without_time().init();
    }

    // The command runs on a thread with room for its future: deep, and large in a debug
    // build (a batch polls all its shops' provisions in one task, which overflowed the
    // process's 8 MB main stack).
    let run_command = move || {
        let ctx = Ctx::new(cli.global);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_stack_size(RUN_STACK / 4)
            .build()
            .expect("tokio runtime");
        let work = async {
            match &cli.command {
                Command::Provision(a) => match &a.shops_file {
                    Some(file) => commands::batch::run(&ctx, a, file).await,
                    None => commands::provision::run(&ctx, a).await,
                },
                Command::Plan(a) => commands::plan::run(&ctx, a).await,
                Command::Status(a) => commands::status::run(&ctx, a).await,
                Command::List(a) => commands::list::run(&ctx, a).await,
                Command::Teardown(a) => commands::teardown::run(&ctx, a).await,
                Command::Pos { command } => commands::pos::run(&ctx, command).await,
                Command::Backup { command } => commands::backup::run(&ctx, command).await,
                Command::Host { command } => commands::host::run(&ctx, command).await,
                Command::Image { command } => commands::image::run(&ctx, command).await,
                Command::Vpn { command } => commands::vpn::run(&ctx, command).await,
                Command::Cutover { command } => commands::cutover::run(&ctx, command).await,
                Command::Report { command } => commands::report::run(&ctx, command).await,
                Command::Quota { command } => commands::quota::run(&ctx, command).await,
                Command::UserData(a) => commands::userdata::run(&ctx, a),
                Command::Completions { shell } => {
                    // clap_complete panics on a failed write (`| head -1`): render first.
                    let mut text = Vec::new();
                    clap_complete::generate(*shell, &mut Cli::command(), "poscloud", &mut text);
                    poscloud::ui::out(&String::from_utf8_lossy(&text));
                    Ok(())
                }
                Command::Man(a) => commands::man::run(&ctx, a),
            }
        };
        // Ctrl-C ends the run at once unless a lock is held: then the locked work stops itself
        // and releases the lock first (ops::interruptible), and its error says so.
        let run = async {
            tokio::pin!(work);
            loop {
                tokio::select! {
                    biased;
                    r = &mut work => break r,
                    _ = tokio::signal::ctrl_c() => if !poscloud::ops::holding_lock() {
                        break Err(Error::Interrupted("interrupted".into()));
                    }
                }
            }
        };
        // A panic is a bug: exit 1 with its message (printed by the panic hook), never 101.
        let result: Result<(), Error> = match std::panic::catch_unwind(
            std::panic::AssertUnwindSafe(|| runtime.block_on(run)),
        ) {
            Ok(r) => r,
            Err(_) => Err(Error::failed(
                "internal error (a bug in poscloud: please report it with the message above)",
            )),
        };
        if let Err(e) = result {
            let code = if detailed {
                poscloud::error::EXIT_FAILURE
            } else {
                e.exit_code()
            };
            ctx.ui.run_failed(&e, code);
            std::process::exit(code);
        }
        if detailed && ctx.pending.get() {
            std::process::exit(2);
        }
    };
    let done = std::thread::Builder::new()
        .name("poscloud".into())
        .stack_size(RUN_STACK)
        .spawn(run_command)
        .map(|t| t.join());
    if !matches!(done, Ok(Ok(()))) {
        std::process::exit(poscloud::error::EXIT_FAILURE);
    }
}
