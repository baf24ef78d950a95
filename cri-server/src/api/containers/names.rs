//! Container and volume names: Docker's validation rules and its
//! `adjective_surname` generated names.

use super::spec::SpecError;

const ADJECTIVES: &[&str] = &[
    "admiring",
    "adoring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "condescending",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

const SURNAMES: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "almeida",
    "archimedes",
    "ardinghelli",
    "aryabhata",
    "austin",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bassi",
    "bell",
    "bhabha",
    "bhaskara",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "boyd",
    "brahmagupta",
    "brattain",
    "brown",
    "carson",
    "chandrasekhar",
    "clarke",
    "colden",
    "cori",
    "cray",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "dubinsky",
    "easley",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gates",
    "goldberg",
    "goldstine",
    "golick",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hermann",
    "hodgkin",
    "hoover",
    "hopper",
    "hugle",
    "hypatia",
    "jackson",
    "jang",
    "jennings",
    "jepsen",
    "johnson",
    "joliot",
    "jones",
    "kalam",
    "kapitsa",
    "kare",
    "keldysh",
    "keller",
    "kepler",
    "khorana",
    "kilby",
    "kirch",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "lamport",
    "leakey",
    "leavitt",
    "lewin",
    "lichterman",
    "liskov",
    "lovelace",
    "lumiere",
    "mahavira",
    "margulis",
    "mayer",
    "mccarthy",
    "mcclintock",
    "mclean",
    "meitner",
    "mendel",
    "merkle",
    "minsky",
    "mirzakhani",
    "moore",
    "morse",
    "murdock",
    "napier",
    "nash",
    "neumann",
    "newton",
    "nobel",
    "noether",
    "northcutt",
    "noyce",
    "panini",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "poitras",
    "ptolemy",
    "raman",
    "ramanujan",
    "ride",
    "ritchie",
    "roentgen",
    "rosalind",
    "saha",
    "sammet",
    "shamir",
    "shannon",
    "shaw",
    "shirley",
    "shockley",
    "sinoussi",
    "snyder",
    "spence",
    "stallman",
    "stonebraker",
    "swanson",
    "swartz",
    "swirles",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "visvesvaraya",
    "volhard",
    "wescoff",
    "wiles",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// A generated name from two random indexes; `retry` > 0 appends a digit
/// as Docker does after a collision.
pub fn generated_name(a: usize, b: usize, retry: u32) -> String {
    let adj = ADJECTIVES[a % ADJECTIVES.len()];
    let sur = SURNAMES[b % SURNAMES.len()];
    // Docker's one exception.
    let sur = if adj == "boring" && sur == "wozniak" {
        "wright"
    } else {
        sur
    };
    if retry == 0 {
        format!("{adj}_{sur}")
    } else {
        format!("{adj}_{sur}{}", retry % 10)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (a
/// leading `/` is accepted and dropped). Returns the bare name.
pub fn validate_container_name(name: &str) -> Result<String, SpecError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.len() > 128 || !valid_name(bare) {
        return Err(SpecError::Invalid {
            field: "container name",
            value: name.to_string(),
            reason: "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
        });
    }
    Ok(bare.to_string())
}

/// Docker's rule for volume names (two characters at least).
pub fn validate_volume_name(name: &str) -> Result<(), SpecError> {
    if name.len() < 2 || name.len() > 128 || !valid_name(name) {
        return Err(SpecError::Invalid {
            field: "volume name",
            value: name.to_string(),
            reason: "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, 2 characters at least",
        });
    }
    Ok(())
}

/// Random indexes for [`generated_name`].
pub fn random_pair() -> (usize, usize) {
    let mut buf = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    let a = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let b = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    (a, b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_valid_and_docker_like() {
        for a in 0..ADJECTIVES.len() {
            for b in [0, 7, 100] {
                let n = generated_name(a, b, 0);
                assert!(validate_container_name(&n).is_ok(), "{n}");
                let (adj, sur) = n.split_once('_').unwrap();
                assert!(ADJECTIVES.contains(&adj) && SURNAMES.contains(&sur));
            }
        }
        assert!(generated_name(1, 2, 3).ends_with('3'));
        let boring = ADJECTIVES.iter().position(|a| *a == "boring").unwrap();
        let woz = SURNAMES.iter().position(|s| *s == "wozniak").unwrap();
        assert_eq!(generated_name(boring, woz, 0), "boring_wright");
    }

    #[test]
    fn name_rules() {
        assert_eq!(validate_container_name("/web").unwrap(), "web");
        assert_eq!(validate_container_name("a.b-c_d9").unwrap(), "a.b-c_d9");
        for bad in ["", "/", "_x", "-x", "a b", "a/b", "é"] {
            assert!(validate_container_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_volume_name("data").is_ok());
        assert!(validate_volume_name("d").is_err());
        assert!(validate_volume_name("../x").is_err());
    }
}
