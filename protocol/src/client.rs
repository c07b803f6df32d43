//! A small async client: one TCP connection of one terminal, requests matched to responses by
//! trace number (responses may arrive out of order when several are outstanding).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::Framed;

use crate::auth::TerminalKey;
use crate::message::{Frame, Header, Message, Request, Response, SignOnReply, TerminalReply};
use crate::types::{LocalTime, TerminalRole};
use crate::{FrameCodec, ProtocolError};

/// Time zone terminals stamp their local time in unless told otherwise (China Standard Time).
pub const DEFAULT_UTC_OFFSET_MINUTES: i32 = 8 * 60;
/// How long [`Client::call`] waits for its response.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 10_000;
/// Responses for other trace numbers kept while waiting for one; a server sending more
/// unrequested responses than this is broken.
pub const MAX_PARKED_RESPONSES: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("the switch closed the connection")]
    Closed,
    #[error("no response within {0} ms")]
    Timeout(u64),
    #[error("the switch sent a request frame ({0}) to a terminal")]
    UnexpectedRequest(crate::MsgType),
    #[error("the switch sent more than {MAX_PARKED_RESPONSES} responses nobody asked for")]
    TooManyParked,
}

/// The wall clock as terminal local time.
pub fn local_time_now() -> LocalTime {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    LocalTime::from_unix_ms(unix_ms, DEFAULT_UTC_OFFSET_MINUTES)
}

pub struct Client {
    framed: Framed<TcpStream, FrameCodec>,
    terminal_id: u32,
    /// This terminal's key, which also wraps the keys it provisions.
    key: Option<TerminalKey>,
    parked: HashMap<u32, (Header, Response)>,
    call_timeout_ms: u64,
}

impl Client {
    /// A terminal that signs every frame with `key` and checks the MAC of every reply.
    pub async fn connect_with_key(
        addr: impl ToSocketAddrs,
        terminal_id: u32,
        key: TerminalKey,
    ) -> Result<Client, ClientError> {
        let mut client = Self::open(addr, terminal_id, FrameCodec::with_key(key.clone())).await?;
        client.key = Some(key);
        Ok(client)
    }

    /// A terminal without a key: its frames carry all-zero MACs, which the switch declines
    /// (`unknown_terminal` or `bad_mac`); for tests of exactly that, and of echo.
    pub async fn connect(addr: impl ToSocketAddrs, terminal_id: u32) -> Result<Client, ClientError> {
        Self::open(addr, terminal_id, FrameCodec::default()).await
    }

    async fn open(addr: impl ToSocketAddrs, terminal_id: u32, codec: FrameCodec) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await.map_err(ClientError::Connect)?;
        stream.set_nodelay(true).map_err(ClientError::Connect)?;
        Ok(Client {
            framed: Framed::new(stream, codec),
            terminal_id,
            key: None,
            parked: HashMap::new(),
            call_timeout_ms: DEFAULT_CALL_TIMEOUT_MS,
        })
    }

    pub fn terminal_id(&self) -> u32 {
        self.terminal_id
    }

    pub fn set_call_timeout_ms(&mut self, timeout_ms: u64) {
        self.call_timeout_ms = timeout_ms;
    }

    /// Sends a request without waiting (pipelining); `flags` as in the header.
    pub async fn send(&mut self, stan: u32, flags: u16, request: Request) -> Result<(), ClientError> {
        let header = Header { flags, terminal_id: self.terminal_id, stan, local_time: local_time_now() };
        self.framed.send(Frame { header, message: Message::Request(request) }).await?;
        Ok(())
    }

    /// Sends raw bytes as they are (for tests of hostile input).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        use tokio::io::AsyncWriteExt;
        self.framed.get_mut().write_all(bytes).await.map_err(ProtocolError::Io)?;
        Ok(())
    }

    /// The next frame from the switch, whatever its trace number.
    pub async fn next_response(&mut self) -> Result<(Header, Response), ClientError> {
        match self.framed.next().await {
            None => Err(ClientError::Closed),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(Frame { header, message: Message::Response(resp) })) => Ok((header, resp)),
            Some(Ok(Frame { message, .. })) => Err(ClientError::UnexpectedRequest(message.msg_type())),
        }
    }

    /// Waits for the response to `stan`, parking others; an `Error` frame (which carries
    /// the offending trace number, or 0) is returned to whoever waits.
    pub async fn receive(&mut self, stan: u32) -> Result<Response, ClientError> {
        if let Some((_, resp)) = self.parked.remove(&stan) {
            return Ok(resp);
        }
        let timeout = Duration::from_millis(self.call_timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (header, resp) = tokio::time::timeout_at(deadline, self.next_response())
                .await
                .map_err(|_| ClientError::Timeout(self.call_timeout_ms))??;
            if header.stan == stan || matches!(resp, Response::Error { .. }) {
                return Ok(resp);
            }
            if self.parked.len() >= MAX_PARKED_RESPONSES {
                return Err(ClientError::TooManyParked);
            }
            self.parked.insert(header.stan, (header, resp));
        }
    }

    /// Sends one request and waits for its response.
    pub async fn call(&mut self, stan: u32, request: Request) -> Result<Response, ClientError> {
        self.send(stan, 0, request).await?;
        self.receive(stan).await
    }

    /// Sends a `register_member` request and waits for its response.
    pub async fn register_member(
        &mut self,
        stan: u32,
        flags: u16,
        register: crate::RegisterMember,
    ) -> Result<Response, ClientError> {
        let header = Header { flags, terminal_id: self.terminal_id, stan, local_time: local_time_now() };
        self.framed.send(Frame { header, message: Message::RegisterMember(Box::new(register)) }).await?;
        self.receive(stan).await
    }

    /// Signs on at `store_id`.
    pub async fn sign_on(&mut self, stan: u32, store_id: u32) -> Result<SignOnReply, ClientError> {
        match self.call(stan, Request::SignOn { store_id }).await? {
            Response::SignOn(reply) => Ok(reply),
            other => Ok(SignOnReply { code: other.code(), business_date: 0 }),
        }
    }

    /// Provisions terminal `terminal_id` with `key` (an admin terminal's request, SPEC §5.17):
    /// the key travels wrapped under this terminal's own key. A client without a key sends it
    /// wrapped under none (all zero), which the switch declines before reading it.
    pub async fn provision(
        &mut self,
        stan: u32,
        terminal_id: u32,
        store_id: u32,
        role: TerminalRole,
        key: &TerminalKey,
    ) -> Result<TerminalReply, ClientError> {
        let wrapped_key = match &self.key {
            Some(own) => own.wrap_for_transport(key, self.terminal_id, stan, terminal_id),
            None => [0; crate::auth::KEY_BYTES],
        };
        let request = Request::ProvisionTerminal { terminal_id, store_id, role: role as u8, wrapped_key };
        match self.call(stan, request).await? {
            Response::Terminal { reply, .. } => Ok(reply),
            other => Ok(TerminalReply { code: other.code(), terminal_id, enabled: 0 }),
        }
    }

    /// Enables or disables terminal `terminal_id` (an admin terminal's request, SPEC §5.18).
    pub async fn set_terminal_state(
        &mut self,
        stan: u32,
        terminal_id: u32,
        enabled: bool,
    ) -> Result<TerminalReply, ClientError> {
        match self.call(stan, Request::SetTerminalState { terminal_id, enabled: u8::from(enabled) }).await? {
            Response::Terminal { reply, .. } => Ok(reply),
            other => Ok(TerminalReply { code: other.code(), terminal_id, enabled: 0 }),
        }
    }
}
