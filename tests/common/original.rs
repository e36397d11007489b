//! The teaching material rtchat replaces, read from `shared/reference/`
//! beside the repository: its chat page and its nginx config, changed only
//! where a test must (the CDN script, the server URL, names and ports).

use std::path::PathBuf;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn material() -> String {
    let dir = PathBuf::from(ROOT).join("../shared/reference");
    let file = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the original's material in {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "txt"))
        .expect("the original's material (a .txt file)");
    std::fs::read_to_string(file).unwrap()
}

/// The fenced block of `lang` after `heading`.
fn block(heading: &str, lang: &str) -> String {
    let text = material();
    let from = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let fence = format!("```{lang}\n");
    let start = text[from..].find(&fence).unwrap() + from + fence.len();
    let end = text[start..].find("```").unwrap() + start;
    text[start..end].to_owned()
}

/// The original page, loading socket.io-client from `script` and
/// connecting to `server` instead of the CDN and `http://localhost`.
pub fn page(script: &str, server: &str) -> String {
    let html = block("### Cliente HTML", "html");
    let cdn = "https://cdn.socket.io/4.6.0/socket.io.min.js";
    let url = "io('http://localhost')";
    assert!(
        html.contains(cdn) && html.contains(url),
        "the original page changed"
    );
    html.replace(cdn, script)
        .replace(url, &format!("io('{server}')"))
}

/// The original nginx config (ip_hash over ws-server-1..3, `location
/// /socket.io/`), in an `http` block, its servers mapped to `upstreams`
/// and listening on `port`.
pub fn nginx_config(upstreams: &[String], port: u16) -> String {
    let mut server = block("### nginx/nginx.conf", "nginx");
    for (i, upstream) in upstreams.iter().enumerate() {
        let name = format!("ws-server-{}:3000", i + 1);
        assert!(server.contains(&name), "the original config names {name}");
        server = server.replace(&name, upstream);
    }
    server = server.replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    format!(
        "worker_processes 1;\nevents {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n{server}\n}}\n"
    )
}

/// The socket.io-client browser bundle the test command installs.
pub fn client_bundle() -> Vec<u8> {
    let path =
        format!("{ROOT}/target/tools/node/node_modules/socket.io-client/dist/socket.io.min.js");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; run the README's test command"))
}

/// Serves a page at `/` (set with [`PageServer::show`]) and the client
/// bundle at `/socket.io.min.js` on a port of its own: a page from an
/// origin other than the chat's. Stops when dropped.
pub struct PageServer {
    pub port: u16,
    page: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    pub async fn start() -> Self {
        use axum::routing::get;
        let bundle = client_bundle();
        let page = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let shown = page.clone();
        let app = axum::Router::new()
            .route(
                "/",
                get(move || {
                    let html = shown.lock().unwrap().clone();
                    async move { axum::response::Html(html) }
                }),
            )
            .route(
                "/socket.io.min.js",
                get(move || async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/javascript")],
                        bundle,
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, page, task }
    }

    pub fn show(&self, html: String) {
        *self.page.lock().unwrap() = html;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
