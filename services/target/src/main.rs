// glibc malloc/free took about a quarter of the CPU in profiles of the edge and projector.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ct_platform::service::main(
        "ct-target",
        "A trigger target for tests and development: records calls, fails or hangs on request, one effect per key.",
        ct_target::Config::load,
        |c| &c.telemetry,
        ct_target::run,
    )
    .await
}
