//! A bare axum "hello" route on the same runtime settings as `devcmd serve`,
//! the yardstick for the HTTP load figures in BENCHMARKS.md.
//!
//! `cargo run --release -p devcmd-benches --bin bare-axum -- 127.0.0.1:8744`

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8744".into());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await
    })
}
