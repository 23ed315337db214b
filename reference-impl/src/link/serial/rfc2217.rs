//! The client side of Telnet with the COM-PORT-OPTION (RFC 2217), sans-IO: what a host sends to
//! open a serial port that an access server (ser2net, a terminal server) shares over TCP, and
//! how it reads the bytes coming back.
//!
//! Telnet (RFC 854) interleaves commands with data: `IAC` (0xFF) starts a command, so a data
//! byte 0xFF crosses as `IAC IAC`, in both directions and inside subnegotiations. Options are
//! negotiated with `WILL`/`WONT`/`DO`/`DONT` (RFC 1143's rule: answer a request only when it
//! changes an option's state, so two ends never loop). The client asks for BINARY (RFC 856)
//! both ways, so no CR/NUL translation touches the data, and SUPPRESS-GO-AHEAD (RFC 858); it
//! offers COM-PORT-OPTION (option 44) and, once the server answers `DO`, sets the line with
//! subnegotiations `IAC SB 44 <command> <value> IAC SE`: SET-BAUDRATE (1, four bytes in
//! network order), SET-DATASIZE (2), SET-PARITY (3), SET-STOPSIZE (4) and SET-CONTROL (5, flow
//! control). The server acknowledges each with the command code plus 100 and the value it
//! applied; the port is [`Rfc2217Client::configured`] when every acknowledgement has arrived
//! with the value asked for.
//!
//! [`Rfc2217Client::handle_input`] takes bytes from the socket and returns the data among them;
//! [`Rfc2217Client::poll_transmit`] gives what must be written back (negotiation answers,
//! subnegotiations); [`encode_data`] escapes data for the wire.

/// Telnet "interpret as command".
pub const IAC: u8 = 255;
/// Telnet `DONT`.
pub const DONT: u8 = 254;
/// Telnet `DO`.
pub const DO: u8 = 253;
/// Telnet `WONT`.
pub const WONT: u8 = 252;
/// Telnet `WILL`.
pub const WILL: u8 = 251;
/// Telnet subnegotiation begin.
pub const SB: u8 = 250;
/// Telnet subnegotiation end.
pub const SE: u8 = 240;

/// Telnet option BINARY (RFC 856).
pub const OPT_BINARY: u8 = 0;
/// Telnet option ECHO (RFC 857).
pub const OPT_ECHO: u8 = 1;
/// Telnet option SUPPRESS-GO-AHEAD (RFC 858).
pub const OPT_SGA: u8 = 3;
/// Telnet option COM-PORT-OPTION (RFC 2217).
pub const OPT_COM_PORT: u8 = 44;

/// RFC 2217 command codes, client to server; the server answers with the code plus
/// [`SERVER_OFFSET`].
pub mod cmd {
    /// SIGNATURE: text naming the sender; empty text asks for the peer's.
    pub const SIGNATURE: u8 = 0;
    /// SET-BAUDRATE: four bytes, network order; 0 asks for the current rate.
    pub const SET_BAUDRATE: u8 = 1;
    /// SET-DATASIZE: 5..=8 bits; 0 asks.
    pub const SET_DATASIZE: u8 = 2;
    /// SET-PARITY: see [`super::Parity`]; 0 asks.
    pub const SET_PARITY: u8 = 3;
    /// SET-STOPSIZE: see [`super::StopBits`]; 0 asks.
    pub const SET_STOPSIZE: u8 = 4;
    /// SET-CONTROL: 1 is "no flow control" (outbound and inbound).
    pub const SET_CONTROL: u8 = 5;
    /// PURGE-DATA: 1 purges the server's buffer of data received from the serial port.
    pub const PURGE_DATA: u8 = 12;
}

/// What the server adds to a command code in its answers.
pub const SERVER_OFFSET: u8 = 100;

/// SET-CONTROL value: no flow control.
pub const CONTROL_NO_FLOW: u8 = 1;
/// PURGE-DATA value: purge the access server's receive buffer (data from the serial port).
pub const PURGE_RX: u8 = 1;

/// Parity as RFC 2217 codes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// 1.
    None = 1,
    /// 2.
    Odd = 2,
    /// 3.
    Even = 3,
}

/// Stop bits as RFC 2217 codes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopBits {
    /// 1.
    One = 1,
    /// 2.
    Two = 2,
}

/// The line settings the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    /// Bits per second.
    pub baud: u32,
    /// Data bits (5..=8).
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits.
    pub stop_bits: StopBits,
}

impl LineSettings {
    /// 8N1 at `baud`, no flow control: a Z-Stack stick's line.
    pub fn n81(baud: u32) -> LineSettings {
        LineSettings {
            baud,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: StopBits::One,
        }
    }

    /// The settings as (command, value) pairs, in the order they are sent.
    fn commands(&self) -> [(u8, Vec<u8>); 5] {
        [
            (cmd::SET_BAUDRATE, self.baud.to_be_bytes().to_vec()),
            (cmd::SET_DATASIZE, vec![self.data_bits]),
            (cmd::SET_PARITY, vec![self.parity as u8]),
            (cmd::SET_STOPSIZE, vec![self.stop_bits as u8]),
            (cmd::SET_CONTROL, vec![CONTROL_NO_FLOW]),
        ]
    }
}

/// The server would not do what opening the port needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rfc2217Error {
    /// It refused COM-PORT-OPTION: the port is served as plain telnet, not RFC 2217.
    #[error(
        "the server refused the COM-PORT-OPTION (RFC 2217); serve the port with RFC 2217 \
         (ser2net: accepter \"telnet(rfc2217),tcp,PORT\") or use tcp://HOST:PORT for a raw port"
    )]
    ComPortRefused,
    /// It applied a different value than the one asked for.
    #[error("the server answered {what} {got} to a request for {asked}")]
    SettingRefused {
        /// Which setting.
        what: &'static str,
        /// What was asked.
        asked: u32,
        /// What the server applied.
        got: u32,
    },
}

/// Where the receiver is in the Telnet byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rx {
    Data,
    Iac,
    Negotiate(u8),
    Sub,
    SubIac,
}

/// Longest subnegotiation kept; longer ones (none that this client needs) are cut.
const MAX_SUB: usize = 256;

/// Our signature, sent when the server asks for it.
const SIGNATURE: &[u8] = b"softbus";

/// One side of an option: enabled, and whether we asked for a change and await the answer.
#[derive(Debug, Clone, Copy, Default)]
struct Side {
    enabled: bool,
    asked: bool,
}

/// An RFC 2217 client's protocol state. See the module docs.
#[derive(Debug)]
pub struct Rfc2217Client {
    settings: LineSettings,
    rx: Rx,
    sub: Vec<u8>,
    tx: Vec<u8>,
    /// Options we perform (`WILL`), indexed by option code.
    local: [Side; 256],
    /// Options the server performs (`DO`), indexed by option code.
    remote: [Side; 256],
    /// Settings sent (after the server agreed to COM-PORT-OPTION).
    settings_sent: bool,
    /// Acknowledged settings, by command code.
    acked: [Option<u32>; 6],
    error: Option<Rfc2217Error>,
}

/// Options this client performs itself when asked.
fn local_wanted(opt: u8) -> bool {
    matches!(opt, OPT_BINARY | OPT_SGA | OPT_COM_PORT)
}

/// Options this client lets the server perform.
fn remote_wanted(opt: u8) -> bool {
    matches!(opt, OPT_BINARY | OPT_SGA)
}

/// Escapes data for the wire: each 0xFF becomes `IAC IAC`.
pub fn encode_data(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 4);
    for &b in data {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
    out
}

/// `IAC SB COM-PORT-OPTION <command> <value, escaped> IAC SE`.
pub fn com_port_command(command: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![IAC, SB, OPT_COM_PORT, command];
    out.extend(encode_data(value));
    out.extend([IAC, SE]);
    out
}

impl Rfc2217Client {
    /// A client that will set the line to `settings`. Its first [`Rfc2217Client::poll_transmit`]
    /// gives the opening negotiation.
    pub fn new(settings: LineSettings) -> Rfc2217Client {
        let mut c = Rfc2217Client {
            settings,
            rx: Rx::Data,
            sub: Vec::new(),
            tx: Vec::new(),
            local: [Side::default(); 256],
            remote: [Side::default(); 256],
            settings_sent: false,
            acked: [None; 6],
            error: None,
        };
        for opt in [OPT_BINARY, OPT_SGA, OPT_COM_PORT] {
            c.local[usize::from(opt)].asked = true;
            c.tx.extend([IAC, WILL, opt]);
        }
        for opt in [OPT_BINARY, OPT_SGA] {
            c.remote[usize::from(opt)].asked = true;
            c.tx.extend([IAC, DO, opt]);
        }
        c
    }

    /// Takes bytes read from the server; returns the data bytes among them, unescaped.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut data = Vec::with_capacity(bytes.len());
        for &b in bytes {
            self.rx = match (self.rx, b) {
                (Rx::Data, IAC) => Rx::Iac,
                (Rx::Data, b) => {
                    data.push(b);
                    Rx::Data
                }
                (Rx::Iac, IAC) => {
                    data.push(IAC);
                    Rx::Data
                }
                (Rx::Iac, DO | DONT | WILL | WONT) => Rx::Negotiate(b),
                (Rx::Iac, SB) => {
                    self.sub.clear();
                    Rx::Sub
                }
                // NOP, GA, DM, BRK, an SE outside a subnegotiation...: nothing to do.
                (Rx::Iac, _) => Rx::Data,
                (Rx::Negotiate(verb), opt) => {
                    self.negotiate(verb, opt);
                    Rx::Data
                }
                (Rx::Sub, IAC) => Rx::SubIac,
                (Rx::Sub, b) => {
                    if self.sub.len() < MAX_SUB {
                        self.sub.push(b);
                    }
                    Rx::Sub
                }
                (Rx::SubIac, IAC) => {
                    if self.sub.len() < MAX_SUB {
                        self.sub.push(IAC);
                    }
                    Rx::Sub
                }
                (Rx::SubIac, SE) => {
                    let sub = std::mem::take(&mut self.sub);
                    self.subnegotiation(&sub);
                    Rx::Data
                }
                // A command inside a subnegotiation is a protocol error: drop what was
                // collected and read on as data.
                (Rx::SubIac, _) => {
                    self.sub.clear();
                    Rx::Data
                }
            };
        }
        data
    }

    /// Bytes to write to the server, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.tx.is_empty()).then(|| std::mem::take(&mut self.tx))
    }

    /// Whether every setting was acknowledged as asked. An error when the server refused
    /// COM-PORT-OPTION or applied another value.
    pub fn configured(&self) -> Result<bool, Rfc2217Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        Ok(self.settings_sent
            && self.acked[usize::from(cmd::SET_BAUDRATE)..=usize::from(cmd::SET_CONTROL)]
                .iter()
                .all(Option::is_some))
    }

    /// Asks the server to drop what it has buffered from the serial port.
    pub fn purge_input(&mut self) {
        if self.local[usize::from(OPT_COM_PORT)].enabled {
            self.tx
                .extend(com_port_command(cmd::PURGE_DATA, &[PURGE_RX]));
        }
    }

    /// Whether the server agreed to send binary data (no CR/NUL translation).
    pub fn binary(&self) -> (bool, bool) {
        (
            self.local[usize::from(OPT_BINARY)].enabled,
            self.remote[usize::from(OPT_BINARY)].enabled,
        )
    }

    fn negotiate(&mut self, verb: u8, opt: u8) {
        let i = usize::from(opt);
        match verb {
            DO => {
                let side = &mut self.local[i];
                if !local_wanted(opt) {
                    self.tx.extend([IAC, WONT, opt]);
                } else if !side.enabled {
                    side.enabled = true;
                    if !std::mem::take(&mut side.asked) {
                        self.tx.extend([IAC, WILL, opt]);
                    }
                    if opt == OPT_COM_PORT {
                        self.send_settings();
                    }
                } else {
                    side.asked = false;
                }
            }
            DONT => {
                let side = &mut self.local[i];
                let was = side.enabled;
                side.enabled = false;
                side.asked = false;
                if was {
                    self.tx.extend([IAC, WONT, opt]);
                }
                if opt == OPT_COM_PORT {
                    self.error.get_or_insert(Rfc2217Error::ComPortRefused);
                }
            }
            WILL => {
                let side = &mut self.remote[i];
                if !remote_wanted(opt) {
                    // ECHO among them: a serial line must not see its own bytes come back.
                    self.tx.extend([IAC, DONT, opt]);
                } else if !side.enabled {
                    side.enabled = true;
                    if !std::mem::take(&mut side.asked) {
                        self.tx.extend([IAC, DO, opt]);
                    }
                } else {
                    side.asked = false;
                }
            }
            _ => {
                // WONT
                let side = &mut self.remote[i];
                let was = side.enabled;
                side.enabled = false;
                side.asked = false;
                if was {
                    self.tx.extend([IAC, DONT, opt]);
                }
            }
        }
    }

    fn send_settings(&mut self) {
        if self.settings_sent {
            return;
        }
        self.settings_sent = true;
        for (command, value) in self.settings.commands() {
            self.tx.extend(com_port_command(command, &value));
        }
    }

    fn subnegotiation(&mut self, sub: &[u8]) {
        let [OPT_COM_PORT, code, value @ ..] = sub else {
            return;
        };
        let Some(command) = code.checked_sub(SERVER_OFFSET) else {
            return;
        };
        if command == cmd::SIGNATURE {
            if value.is_empty() {
                self.tx.extend(com_port_command(cmd::SIGNATURE, SIGNATURE));
            }
            return;
        }
        let (what, asked) = match command {
            cmd::SET_BAUDRATE => ("baud rate", self.settings.baud),
            cmd::SET_DATASIZE => ("data size", u32::from(self.settings.data_bits)),
            cmd::SET_PARITY => ("parity", self.settings.parity as u32),
            cmd::SET_STOPSIZE => ("stop size", self.settings.stop_bits as u32),
            cmd::SET_CONTROL => ("flow control", u32::from(CONTROL_NO_FLOW)),
            // Line and modem state notifications, purge acknowledgements: nothing to check.
            _ => return,
        };
        let got = match value {
            [b] => u32::from(*b),
            [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
            _ => return,
        };
        if got != asked {
            self.error
                .get_or_insert(Rfc2217Error::SettingRefused { what, asked, got });
        }
        self.acked[usize::from(command)] = Some(got);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's acknowledgement of `command` with `value`.
    fn ack(command: u8, value: &[u8]) -> Vec<u8> {
        com_port_command(command + SERVER_OFFSET, value)
    }

    fn configured_client(baud: u32) -> Rfc2217Client {
        let mut c = Rfc2217Client::new(LineSettings::n81(baud));
        c.poll_transmit();
        let mut input = vec![
            IAC,
            DO,
            OPT_BINARY,
            IAC,
            WILL,
            OPT_BINARY,
            IAC,
            DO,
            OPT_COM_PORT,
        ];
        input.extend(ack(cmd::SET_BAUDRATE, &baud.to_be_bytes()));
        for (command, v) in [
            (cmd::SET_DATASIZE, 8),
            (cmd::SET_PARITY, 1),
            (cmd::SET_STOPSIZE, 1),
            (cmd::SET_CONTROL, 1),
        ] {
            input.extend(ack(command, &[v]));
        }
        assert_eq!(c.handle_input(&input), Vec::<u8>::new());
        c.poll_transmit();
        c
    }

    #[test]
    fn opens_with_will_and_do_of_the_options_it_needs() {
        let mut c = Rfc2217Client::new(LineSettings::n81(115_200));
        assert_eq!(
            c.poll_transmit().unwrap(),
            [
                IAC, WILL, 0, IAC, WILL, 3, IAC, WILL, 44, // BINARY, SGA, COM-PORT-OPTION
                IAC, DO, 0, IAC, DO, 3,
            ]
        );
        assert_eq!(c.poll_transmit(), None);
        assert_eq!(c.configured(), Ok(false));
    }

    #[test]
    fn sets_8n1_at_the_baud_rate_once_the_server_does_com_port() {
        let mut c = Rfc2217Client::new(LineSettings::n81(115_200));
        c.poll_transmit();
        // Our WILL answered: no reply, but the settings follow (RFC 2217 section "Baud rate":
        // IAC SB COM-PORT-OPTION SET-BAUDRATE <value(4)> IAC SE, network byte order).
        c.handle_input(&[IAC, DO, OPT_COM_PORT]);
        assert_eq!(
            c.poll_transmit().unwrap(),
            [
                IAC, SB, 44, 1, 0x00, 0x01, 0xC2, 0x00, IAC, SE, // 115200 = 0x0001C200
                IAC, SB, 44, 2, 8, IAC, SE, // SET-DATASIZE 8
                IAC, SB, 44, 3, 1, IAC, SE, // SET-PARITY NONE
                IAC, SB, 44, 4, 1, IAC, SE, // SET-STOPSIZE 1
                IAC, SB, 44, 5, 1, IAC, SE, // SET-CONTROL no flow control
            ]
        );
        // A second DO changes nothing and sends nothing.
        c.handle_input(&[IAC, DO, OPT_COM_PORT]);
        assert_eq!(c.poll_transmit(), None);
        assert_eq!(c.configured(), Ok(false));
    }

    #[test]
    fn is_configured_when_every_setting_is_acknowledged_with_the_value_asked() {
        let c = configured_client(115_200);
        assert_eq!(c.configured(), Ok(true));
        assert_eq!(c.binary(), (true, true));
    }

    #[test]
    fn a_baud_rate_with_ff_bytes_is_escaped_in_the_subnegotiation_and_read_back() {
        // 0x0001_FFFF: the low bytes are IAC and must cross doubled.
        let baud = 0x0001_FFFF;
        let mut c = Rfc2217Client::new(LineSettings::n81(baud));
        c.poll_transmit();
        c.handle_input(&[IAC, DO, OPT_COM_PORT]);
        let tx = c.poll_transmit().unwrap();
        assert_eq!(
            &tx[..12],
            [IAC, SB, 44, 1, 0x00, 0x01, IAC, IAC, IAC, IAC, IAC, SE]
        );
        c.handle_input(&ack(cmd::SET_BAUDRATE, &baud.to_be_bytes()));
        assert_eq!(c.configured(), Ok(false));
        assert_eq!(c.acked[1], Some(baud));
    }

    #[test]
    fn a_server_that_refuses_com_port_is_an_error() {
        let mut c = Rfc2217Client::new(LineSettings::n81(115_200));
        c.poll_transmit();
        c.handle_input(&[IAC, DONT, OPT_COM_PORT]);
        // It was only asked for, never enabled: no WONT back (RFC 1143).
        assert_eq!(c.poll_transmit(), None);
        assert_eq!(c.configured(), Err(Rfc2217Error::ComPortRefused));
    }

    #[test]
    fn a_different_baud_rate_in_the_answer_is_an_error() {
        let mut c = Rfc2217Client::new(LineSettings::n81(115_200));
        c.poll_transmit();
        c.handle_input(&[IAC, DO, OPT_COM_PORT]);
        c.handle_input(&ack(cmd::SET_BAUDRATE, &9600u32.to_be_bytes()));
        assert_eq!(
            c.configured(),
            Err(Rfc2217Error::SettingRefused {
                what: "baud rate",
                asked: 115_200,
                got: 9600
            })
        );
    }

    #[test]
    fn data_ff_is_doubled_out_and_undoubled_in() {
        assert_eq!(
            encode_data(&[0xFE, 0xFF, 0x01, 0xFF]),
            [0xFE, IAC, IAC, 1, IAC, IAC]
        );
        let mut c = configured_client(115_200);
        // Split anywhere, including between the two IACs.
        assert_eq!(c.handle_input(&[0xFE, IAC]), [0xFE]);
        assert_eq!(c.handle_input(&[IAC, 0x02]), [0xFF, 0x02]);
    }

    #[test]
    fn commands_and_notifications_between_data_are_not_data() {
        let mut c = configured_client(115_200);
        let mut input = vec![1, 2, IAC, 241]; // NOP
        input.extend(ack(6, &[0x60])); // NOTIFY-LINESTATE
        input.extend([3, IAC, WILL, OPT_ECHO, 4]);
        assert_eq!(c.handle_input(&input), [1, 2, 3, 4]);
        // ECHO refused: the line must not get its own bytes back.
        assert_eq!(c.poll_transmit().unwrap(), [IAC, DONT, OPT_ECHO]);
        assert_eq!(c.configured(), Ok(true));
    }

    #[test]
    fn unknown_options_are_refused_once_and_agreed_ones_not_reanswered() {
        let mut c = Rfc2217Client::new(LineSettings::n81(115_200));
        c.poll_transmit();
        c.handle_input(&[IAC, DO, 24, IAC, WILL, OPT_SGA, IAC, WILL, OPT_SGA]);
        // TERMINAL-TYPE refused; our own DO SGA answered by the first WILL, the second ignored.
        assert_eq!(c.poll_transmit().unwrap(), [IAC, WONT, 24]);
        // A server that turns SGA off later gets its DONT acknowledged.
        c.handle_input(&[IAC, WONT, OPT_SGA]);
        assert_eq!(c.poll_transmit().unwrap(), [IAC, DONT, OPT_SGA]);
    }

    #[test]
    fn answers_a_signature_request_and_purges_on_request() {
        let mut c = configured_client(115_200);
        c.handle_input(&ack(cmd::SIGNATURE, &[]));
        let mut want = com_port_command(cmd::SIGNATURE, SIGNATURE);
        assert_eq!(c.poll_transmit().unwrap(), want);
        c.purge_input();
        want = vec![IAC, SB, 44, 12, 1, IAC, SE];
        assert_eq!(c.poll_transmit().unwrap(), want);
    }
}
