// glibc malloc/free took about a quarter of the CPU in profiles of the edge and projector.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ct_platform::service::main(
        "ct-projector",
        "Idempotent projector: ct.events.v1 into Postgres read models and Redis hot views.",
        ct_projector::Config::load,
        |c| &c.telemetry,
        ct_projector::run,
    )
    .await
}
