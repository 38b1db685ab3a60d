//! The load generator's HTTP client: keep-alive HTTP/1.1 connections driven straight by
//! hyper, each reused by one request at a time.
//!
//! The bench shares the machine's two cores with the pipeline, so every microsecond the
//! client spends is one the pipeline does not get. reqwest's pool, URL handling and
//! connector cost about as much CPU per callback as the sandbox did (BENCHMARKS.md);
//! a bare hyper connection does the same HTTP for a fraction. `https` targets go through
//! reqwest, which brings TLS.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use std::sync::Mutex;

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Poster::Plain(_) => f.write_str("Poster::Plain"),
            _ => f.write_str("Poster::Tls"),
        }
    }
}

/// POSTs JSON bodies to one URL.
pub(crate) enum Poster {
    Plain(Plain),
    Tls {
        client: reqwest::Client,
        url: String,
    },
}

impl Poster {
    /// A client for `url` (`http://` or `https://`), keeping up to `connections` open.
    pub(crate) fn new(url: &str, connections: usize) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("bad target URL {url}"))?;
        match uri.scheme_str() {
            Some("http") => Ok(Self::Plain(Plain::new(&uri, connections)?)),
            Some("https") => Ok(Self::Tls {
                client: reqwest::Client::builder()
                    .pool_max_idle_per_host(connections.max(1))
                    .tcp_nodelay(true)
                    .build()?,
                url: url.to_owned(),
            }),
            _ => anyhow::bail!("target URL {url}: http:// or https:// expected"),
        }
    }

    /// Sends one JSON body; answers the HTTP status once the whole answer is read.
    pub(crate) async fn post_json(&self, body: String) -> anyhow::Result<u16> {
        match self {
            Self::Plain(plain) => plain.post_json(body).await,
            Self::Tls { client, url } => {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status().as_u16();
                response.bytes().await?;
                Ok(status)
            }
        }
    }
}

/// Plain HTTP/1.1: idle connections wait in a stack; a request takes one (or opens one),
/// and puts it back once its answer has been read to the end.
pub(crate) struct Plain {
    /// `host:port` to connect to.
    authority: String,
    host: HeaderValue,
    path: Uri,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Plain {
    fn new(uri: &Uri, connections: usize) -> anyhow::Result<Self> {
        let host = uri.host().context("target URL has no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = format!("{host}:{port}");
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .context("target URL path")?;
        Ok(Self {
            host: HeaderValue::from_str(&authority)?,
            authority,
            path,
            idle: Mutex::new(Vec::with_capacity(connections)),
        })
    }

    async fn post_json(&self, body: String) -> anyhow::Result<u16> {
        let mut sender = self.connection().await?;
        let request = Request::post(self.path.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        self.idle.lock().unwrap().push(sender);
        Ok(status)
    }

    /// An idle connection that can take a request (ones the server closed are dropped),
    /// else a new one.
    async fn connection(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        loop {
            let idle = self.idle.lock().unwrap().pop();
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                None => return self.connect().await,
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot connect to {}", self.authority))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(matches!(
            Poster::new("http://127.0.0.1:8080/v1/callback", 4),
            Ok(Poster::Plain(_))
        ));
        assert!(matches!(
            Poster::new("https://ingest.example/v1/callback", 4),
            Ok(Poster::Tls { .. })
        ));
        assert!(Poster::new("ftp://x/v1/callback", 4).is_err());
        let Ok(Poster::Plain(plain)) = Poster::new("http://localhost/v1/callback?x=1", 1) else {
            panic!("plain");
        };
        assert_eq!(plain.authority, "localhost:80");
        assert_eq!(plain.path, "/v1/callback?x=1");
    }
}
