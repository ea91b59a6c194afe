// glibc malloc/free took about a quarter of the CPU in profiles of the edge and projector.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ct_platform::service::main(
        "ct-edge",
        "Edge ingestor: signed webhooks in, validated and redacted Avro records on ct.events.v1 out.",
        ct_edge::Config::load,
        |c| &c.telemetry,
        ct_edge::run,
    )
    .await
}
