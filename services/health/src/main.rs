// glibc malloc/free took about a quarter of the CPU in profiles of the edge and projector.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ct_platform::service::main(
        "ct-health",
        "Health evaluator: per-system status from ct.events.v1 and the log's clock, with reasons and history.",
        ct_health::Config::load,
        |c| &c.telemetry,
        ct_health::run,
    )
    .await
}
