// glibc malloc/free took about a quarter of the CPU in profiles of the edge and projector.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ct_platform::service::main(
        "ct-dlq-categoriser",
        "DLQ categoriser: ct.dlq.v1 into SCHEMA / TRANSIENT / CRITICAL, transient retries, dlq_items.",
        ct_dlq_categoriser::Config::load,
        |c| &c.telemetry,
        ct_dlq_categoriser::run,
    )
    .await
}
