//! A resource server that verifies latchkey tokens offline and hears of revocations
//! within a second (`Claims` is the actix-web extractor).
//!
//! ```sh
//! LATCHKEY_ISSUER=http://127.0.0.1:8080 RS_ID=orders-api RS_SECRET=… AUDIENCE=latchkey \
//!   cargo run -p latchkey-verify --features actix --example resource-server
//! curl -H "Authorization: Bearer $ACCESS" http://127.0.0.1:8081/orders
//! ```

use actix_web::{web, App, HttpResponse, HttpServer};
use latchkey_verify::{Claims, Verifier};

async fn orders(claims: Claims) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "user": claims.sub,
        "session": claims.sid,
        "orders": [],
    }))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let verifier = Verifier::builder(env("LATCHKEY_ISSUER", "http://127.0.0.1:8080"))
        .audience(env("AUDIENCE", "latchkey"))
        .resource_server(env("RS_ID", "orders-api"), env("RS_SECRET", ""))
        .build()
        .await
        .map_err(std::io::Error::other)?;
    let bind = env("BIND", "127.0.0.1:8081");
    println!("resource server on http://{bind}/orders");
    let data = web::Data::new(verifier);
    HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/orders", web::get().to(orders))
    })
    .bind(bind)?
    .run()
    .await
}
