// glibc malloc/free took about a quarter of the CPU in profiles of the edge and projector.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ct_platform::service::main(
        "ct-digest",
        "Daily digest: each local day's events, failures and payments from ct.events.v1 and the log's clock, published at 08:00 Europe/London.",
        ct_digest::Config::load,
        |c| &c.telemetry,
        ct_digest::run,
    )
    .await
}
