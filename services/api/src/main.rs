// glibc malloc/free took about a quarter of the CPU in profiles of the edge and projector.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ct_platform::service::main(
        "ct-api",
        "Read API over the Control Tower read models: events, runs, systems, health.",
        ct_api::Config::load,
        |c| &c.telemetry,
        ct_api::run,
    )
    .await
}
