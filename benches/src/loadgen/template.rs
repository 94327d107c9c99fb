//! Path and body templates with placeholders, so the generator can drive any server whose
//! endpoints have the same meaning: `/api/v1/events/{event}/reservations`,
//! `{"seatIds":[{seats}]}`.
//!
//! A placeholder is `{name}` with a name from [`Var`]; any other brace is literal text, so a
//! JSON body is written as it is. An unknown name, or one the endpoint cannot supply, is an
//! error when the template is parsed (a typo fails before the run, not in every request).
//! Templates are parsed once; rendering is one pass into one `String`.
//!
//! Values are escaped for where they land: percent-encoded in paths, JSON-string-escaped in
//! bodies (the template supplies the quotes: `"{reservation}"`). `{seats}` renders every
//! picked seat as a quoted JSON string, comma-separated, for an array: `[{seats}]`.
//! `{quantity}`, `{buyer}` and `{amount}` are written as they are (numbers; `{amount}` is the
//! prepare answer's JSON value verbatim, quotes included if it was a string).

use super::error::LoadgenError;
use std::fmt::Write as _;

/// A placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// The event id.
    Event,
    /// The first picked seat.
    Seat,
    /// Every picked seat, as JSON strings separated by commas.
    Seats,
    /// Seats per hold.
    Quantity,
    /// The reservation id from the hold's answer.
    Reservation,
    /// The order id from the prepare answer.
    Order,
    /// The amount from the prepare answer (its JSON text).
    Amount,
    /// A made-up payment key, unique per payment.
    PaymentKey,
    /// The buyer's e-mail.
    Email,
    /// The buyer's password.
    Password,
    /// The buyer's display name.
    Name,
    /// The buyer's index (0-based).
    Buyer,
}

impl Var {
    const ALL: [Var; 12] = [
        Var::Event,
        Var::Seat,
        Var::Seats,
        Var::Quantity,
        Var::Reservation,
        Var::Order,
        Var::Amount,
        Var::PaymentKey,
        Var::Email,
        Var::Password,
        Var::Name,
        Var::Buyer,
    ];

    /// The name between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Var::Event => "event",
            Var::Seat => "seat",
            Var::Seats => "seats",
            Var::Quantity => "quantity",
            Var::Reservation => "reservation",
            Var::Order => "order",
            Var::Amount => "amount",
            Var::PaymentKey => "paymentKey",
            Var::Email => "email",
            Var::Password => "password",
            Var::Name => "name",
            Var::Buyer => "buyer",
        }
    }

    fn parse(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// How substituted values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Percent-encoding of everything but RFC 3986's unreserved characters.
    Path,
    /// JSON string escaping (the template writes the quotes).
    Json,
}

/// The seats a hold names: by id, or as indices into a seat list (no copy of the ids).
#[derive(Debug, Clone, Copy, Default)]
pub enum SeatList<'a> {
    /// None.
    #[default]
    None,
    /// These ids.
    Names(&'a [&'a str]),
    /// `ids[i]` for each `i` in `picks`.
    Indexed {
        /// Every seat id.
        ids: &'a [Box<str>],
        /// The picked indices.
        picks: &'a [u32],
    },
}

impl<'a> SeatList<'a> {
    fn len(&self) -> usize {
        match self {
            SeatList::None => 0,
            SeatList::Names(n) => n.len(),
            SeatList::Indexed { picks, .. } => picks.len(),
        }
    }

    fn get(&self, i: usize) -> &'a str {
        match *self {
            SeatList::None => "",
            SeatList::Names(n) => n[i],
            SeatList::Indexed { ids, picks } => &ids[picks[i] as usize],
        }
    }
}

/// The values a template may use; an endpoint fills in what it has.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    /// `{event}`.
    pub event: &'a str,
    /// `{seat}` (the first) and `{seats}`.
    pub seats: SeatList<'a>,
    /// `{quantity}`.
    pub quantity: u32,
    /// `{reservation}`.
    pub reservation: &'a str,
    /// `{order}`.
    pub order: &'a str,
    /// `{amount}` (JSON text).
    pub amount: &'a str,
    /// `{paymentKey}`.
    pub payment_key: &'a str,
    /// `{email}`.
    pub email: &'a str,
    /// `{password}`.
    pub password: &'a str,
    /// `{name}`.
    pub name: &'a str,
    /// `{buyer}`.
    pub buyer: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    segments: Vec<Segment>,
    escape: Escape,
    literal_len: usize,
}

impl Template {
    /// Parses `text`, accepting only the placeholders in `allowed`; `field` names the
    /// template in errors.
    pub fn parse(field: &'static str, text: &str, escape: Escape, allowed: &[Var]) -> Result<Self, LoadgenError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let name_len = after.bytes().take_while(u8::is_ascii_alphanumeric).count();
            let closes = after.as_bytes().get(name_len) == Some(&b'}');
            if name_len == 0 || !closes {
                literal.push_str(&rest[..=open]);
                rest = after;
                continue;
            }
            let name = &after[..name_len];
            let var = Var::parse(name).ok_or_else(|| LoadgenError::Template {
                field,
                message: format!("unknown placeholder {{{name}}}; known: {}", names(&Var::ALL)),
            })?;
            if !allowed.contains(&var) {
                let message = format!("{{{name}}} is not available here; this template may use {}", names(allowed));
                return Err(LoadgenError::Template { field, message });
            }
            literal.push_str(&rest[..open]);
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Var(var));
            rest = &after[name_len + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        let literal_len = segments.iter().map(|s| if let Segment::Literal(l) = s { l.len() } else { 0 }).sum::<usize>();
        Ok(Self { segments, escape, literal_len })
    }

    /// Whether it has no placeholder (it can be rendered once and reused).
    pub fn is_constant(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether it uses `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.segments.contains(&Segment::Var(var))
    }

    /// The rendered text.
    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::with_capacity(self.literal_len + 64);
        self.render_into(vars, &mut out);
        out
    }

    /// Appends the rendered text to `out`.
    pub fn render_into(&self, vars: &Vars<'_>, out: &mut String) {
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Var(var) => self.value(*var, vars, out),
            }
        }
    }

    fn value(&self, var: Var, vars: &Vars<'_>, out: &mut String) {
        match var {
            Var::Event => self.escaped(vars.event, out),
            Var::Seat => self.escaped(if vars.seats.len() > 0 { vars.seats.get(0) } else { "" }, out),
            Var::Seats => {
                for i in 0..vars.seats.len() {
                    if i > 0 {
                        out.push(',');
                    }
                    let quote = self.escape == Escape::Json;
                    if quote {
                        out.push('"');
                    }
                    self.escaped(vars.seats.get(i), out);
                    if quote {
                        out.push('"');
                    }
                }
            }
            Var::Quantity => {
                let _ = write!(out, "{}", vars.quantity);
            }
            Var::Buyer => {
                let _ = write!(out, "{}", vars.buyer);
            }
            Var::Amount => out.push_str(vars.amount),
            Var::Reservation => self.escaped(vars.reservation, out),
            Var::Order => self.escaped(vars.order, out),
            Var::PaymentKey => self.escaped(vars.payment_key, out),
            Var::Email => self.escaped(vars.email, out),
            Var::Password => self.escaped(vars.password, out),
            Var::Name => self.escaped(vars.name, out),
        }
    }

    fn escaped(&self, value: &str, out: &mut String) {
        match self.escape {
            Escape::Json => json_escape(value, out),
            Escape::Path => percent_encode(value, out),
        }
    }
}

fn names(vars: &[Var]) -> String {
    vars.iter().map(|v| format!("{{{}}}", v.name())).collect::<Vec<_>>().join(", ")
}

/// Appends `value` escaped for the inside of a JSON string.
pub fn json_escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Appends `value` percent-encoded (every byte outside `A-Za-z0-9-._~`).
fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: &[Var] = &[Var::Event, Var::Seat, Var::Seats, Var::Quantity, Var::Buyer];

    #[test]
    fn a_path_template_substitutes_the_event_and_keeps_the_rest() {
        let t = Template::parse("hold_path", "/api/v1/events/{event}/reservations", Escape::Path, HOLD).unwrap();
        let vars = Vars { event: "e-1", ..Vars::default() };
        assert_eq!(t.render(&vars), "/api/v1/events/e-1/reservations");
        assert!(!t.is_constant());
        assert!(t.uses(Var::Event));
    }

    #[test]
    fn json_braces_are_literal_and_placeholders_are_substituted() {
        let t = Template::parse("hold_best_body", r#"{"bestAvailable":{"quantity":{quantity}}}"#, Escape::Json, HOLD)
            .unwrap();
        assert_eq!(t.render(&Vars { quantity: 2, ..Vars::default() }), r#"{"bestAvailable":{"quantity":2}}"#);
    }

    #[test]
    fn seats_render_as_a_json_array_body() {
        let t = Template::parse("hold_seats_body", r#"{"seatIds":[{seats}],"first":"{seat}"}"#, Escape::Json, HOLD)
            .unwrap();
        let ids: Vec<Box<str>> = vec!["A-1".into(), "A-2".into(), "B-\"7".into()];
        let vars = Vars { seats: SeatList::Indexed { ids: &ids, picks: &[2, 0] }, ..Vars::default() };
        assert_eq!(t.render(&vars), r#"{"seatIds":["B-\"7","A-1"],"first":"B-\"7"}"#);
        let vars = Vars { seats: SeatList::Names(&["x"]), ..Vars::default() };
        assert_eq!(t.render(&vars), r#"{"seatIds":["x"],"first":"x"}"#);
    }

    #[test]
    fn path_values_are_percent_encoded() {
        let t = Template::parse("p", "/x/{seat}", Escape::Path, HOLD).unwrap();
        let vars = Vars { seats: SeatList::Names(&["A 1/2"]), ..Vars::default() };
        assert_eq!(t.render(&vars), "/x/A%201%2F2");
    }

    #[test]
    fn json_values_are_escaped() {
        let mut out = String::new();
        json_escape("a\"b\\c\nd\u{1}", &mut out);
        assert_eq!(out, "a\\\"b\\\\c\\nd\\u0001");
    }

    #[test]
    fn a_template_without_placeholders_is_constant() {
        let t = Template::parse("events_path", "/api/v1/events?status=on_sale", Escape::Path, &[]).unwrap();
        assert!(t.is_constant());
        assert_eq!(t.render(&Vars::default()), "/api/v1/events?status=on_sale");
    }

    #[test]
    fn an_unknown_placeholder_is_an_error_naming_the_field() {
        let e = Template::parse("hold_path", "/events/{evnt}", Escape::Path, HOLD).unwrap_err().to_string();
        assert!(e.contains("hold_path") && e.contains("{evnt}"), "{e}");
    }

    #[test]
    fn a_placeholder_the_endpoint_cannot_supply_is_an_error() {
        let e = Template::parse("hold_seats_body", "{\"o\":\"{order}\"}", Escape::Json, HOLD).unwrap_err();
        assert!(e.to_string().contains("{order} is not available"), "{e}");
    }

    #[test]
    fn unclosed_or_empty_braces_are_literal() {
        let t = Template::parse("b", "{ {} {event", Escape::Json, HOLD).unwrap();
        assert!(t.is_constant());
        assert_eq!(t.render(&Vars::default()), "{ {} {event");
    }

    #[test]
    fn amount_and_numbers_are_written_verbatim() {
        let allowed = &[Var::Order, Var::Amount, Var::PaymentKey, Var::Buyer];
        let t = Template::parse(
            "confirm_body",
            r#"{"orderId":"{order}","amount":{amount},"paymentKey":"{paymentKey}","b":{buyer}}"#,
            Escape::Json,
            allowed,
        )
        .unwrap();
        let vars = Vars { order: "o-1", amount: "2000", payment_key: "pk-1", buyer: 7, ..Vars::default() };
        assert_eq!(t.render(&vars), r#"{"orderId":"o-1","amount":2000,"paymentKey":"pk-1","b":7}"#);
    }
}
