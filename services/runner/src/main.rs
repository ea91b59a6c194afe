// glibc malloc/free took about a quarter of the CPU in profiles of the edge and projector.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ct_platform::service::main(
        "ct-runner",
        "Runner: the runs read model, and the executor of allow-listed triggers.",
        ct_runner::Config::load,
        |c| &c.telemetry,
        ct_runner::run,
    )
    .await
}
