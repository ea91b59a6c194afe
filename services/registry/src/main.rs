// glibc malloc/free took about a quarter of the CPU in profiles of the edge and projector.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ct_platform::service::main(
        "ct-registry",
        "Confluent-compatible schema registry stored in the `_schemas` Kafka topic.",
        ct_registry::Config::load,
        |c| &c.telemetry,
        ct_registry::run,
    )
    .await
}
