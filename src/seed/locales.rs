//! Where the synthetic people come from: names (accents and all), streets, cities and how each
//! country writes addresses and phone numbers.
//!
//! Phone numbers are built from a "slot" unique to each person and number, so that no two people
//! share one. American numbers use the 555 exchange, written in the national format of the
//! default region; numbers abroad are written in international format.

pub(super) struct Locale {
    /// Relative share of the people.
    pub weight: u32,
    pub first_names: &'static [&'static str],
    pub last_names: &'static [&'static str],
    /// Vietnamese names put the family name first.
    pub family_name_first: bool,
    pub streets: &'static [&'static str],
    pub cities: &'static [&'static str],
    pub address: fn(house: u32, street: &str, city: &str, code: u32) -> String,
    /// `None` for the United States (national format); otherwise the international number of
    /// the slot.
    pub phone: Option<fn(slot: u64) -> String>,
}

pub(super) const LOCALES: &[Locale] = &[
    Locale {
        weight: 52,
        first_names: &[
            "James",
            "Mary",
            "Robert",
            "Patricia",
            "Michael",
            "Jennifer",
            "David",
            "Linda",
            "William",
            "Elizabeth",
            "Emily",
            "Daniel",
            "Olivia",
            "Matthew",
            "Ashley",
            "Anthony",
            "Chloe",
            "Mark",
            "Zoë",
            "Renée",
            "Noah",
            "Grace",
            "Ethan",
            "Hannah",
            "Tyler",
            "Madison",
            "Kevin",
            "Brianna",
            "Jamal",
            "Aaliyah",
        ],
        last_names: &[
            "Smith",
            "Johnson",
            "Williams",
            "Brown",
            "Jones",
            "Miller",
            "Davis",
            "Wilson",
            "Anderson",
            "Taylor",
            "Thomas",
            "Moore",
            "Jackson",
            "Martin",
            "Lee",
            "Thompson",
            "White",
            "Harris",
            "Clark",
            "Lewis",
            "Robinson",
            "Walker",
            "Young",
            "Allen",
            "King",
            "O'Brien",
            "Washington",
            "Nguyen",
            "Patel",
            "Kim",
        ],
        family_name_first: false,
        streets: &[
            "Maple Avenue",
            "Oak Street",
            "Pine Road",
            "Cedar Lane",
            "Elm Street",
            "Washington Boulevard",
            "Lakeview Drive",
            "Sunset Boulevard",
            "Park Avenue",
            "Hillcrest Road",
            "Main Street",
            "Church Street",
        ],
        cities: &[
            "Springfield, IL",
            "Portland, OR",
            "Austin, TX",
            "Columbus, OH",
            "Madison, WI",
            "Raleigh, NC",
            "Denver, CO",
            "Boise, ID",
            "Albany, NY",
            "Tucson, AZ",
        ],
        address: |house, street, city, code| format!("{house} {street}, {city} {:05}", code),
        phone: None,
    },
    Locale {
        weight: 7,
        first_names: &[
            "José", "María", "Lucía", "Álvaro", "Inés", "Sofía", "Javier", "Nuria", "Íñigo",
            "Begoña", "Raúl", "Mónica", "Sergio", "Elena",
        ],
        last_names: &[
            "García",
            "Núñez",
            "Fernández",
            "Martínez",
            "López",
            "Sánchez",
            "Pérez",
            "Gómez",
            "Jiménez",
            "Muñoz",
            "Álvarez",
            "Ibáñez",
            "Rodríguez",
            "Peña",
        ],
        family_name_first: false,
        streets: &[
            "Calle Mayor",
            "Calle de Alcalá",
            "Gran Vía",
            "Paseo de la Castellana",
            "Calle del Olmo",
            "Avenida de la Constitución",
            "Calle Real",
        ],
        cities: &[
            "Madrid",
            "Sevilla",
            "Valencia",
            "Bilbao",
            "Málaga",
            "Zaragoza",
            "A Coruña",
        ],
        address: |house, street, city, code| format!("{street} {house}, {:05} {city}", code),
        phone: Some(|slot| {
            let d = slot % 10_000_000;
            format!(
                "+34 91 {:03} {:02} {:02}",
                d / 10_000,
                d / 100 % 100,
                d % 100
            )
        }),
    },
    Locale {
        weight: 7,
        first_names: &[
            "Lukas", "Anna", "Jürgen", "Lena", "Felix", "Mia", "Björn", "Jörg", "Katrin", "Sören",
            "Ute", "Matthias", "Hanna", "Tobias",
        ],
        last_names: &[
            "Müller",
            "Schmidt",
            "Schröder",
            "Weiß",
            "Köhler",
            "Fischer",
            "Becker",
            "Hoffmann",
            "Schäfer",
            "Krüger",
            "Wagner",
            "Böhm",
            "Groß",
            "Vogel",
        ],
        family_name_first: false,
        streets: &[
            "Hauptstraße",
            "Schloßallee",
            "Gartenweg",
            "Bahnhofstraße",
            "Lindenstraße",
            "Mühlenweg",
            "Königsallee",
        ],
        cities: &[
            "Berlin",
            "München",
            "Köln",
            "Düsseldorf",
            "Nürnberg",
            "Lübeck",
            "Münster",
        ],
        address: |house, street, city, code| format!("{street} {house}, {:05} {city}", code),
        phone: Some(|slot| format!("+49 30 9{:07}", slot % 10_000_000)),
    },
    Locale {
        weight: 6,
        first_names: &[
            "François",
            "Amélie",
            "Jérôme",
            "Hélène",
            "Léa",
            "Gaëlle",
            "Benoît",
            "Chloé",
            "Étienne",
            "Maëlys",
            "Noël",
            "Céline",
            "Loïc",
            "Océane",
        ],
        last_names: &[
            "Dubois",
            "Lefèvre",
            "Moreau",
            "Girard",
            "Bérénger",
            "Faure",
            "Rousseau",
            "Mercier",
            "Lemaître",
            "Chevalier",
            "Gauthier",
            "Dupré",
            "Fontaine",
            "Bonnet",
        ],
        family_name_first: false,
        streets: &[
            "rue de la Paix",
            "avenue des Champs-Élysées",
            "rue du Faubourg Saint-Honoré",
            "boulevard Saint-Michel",
            "rue de Rivoli",
            "place de l'Église",
        ],
        cities: &[
            "Paris",
            "Lyon",
            "Marseille",
            "Nantes",
            "Besançon",
            "Orléans",
            "Nîmes",
        ],
        address: |house, street, city, code| format!("{house} {street}, {:05} {city}", code),
        phone: Some(|slot| {
            let d = slot % 10_000_000;
            format!(
                "+33 1 4{} {:02} {:02} {:02}",
                d / 1_000_000,
                d / 10_000 % 100,
                d / 100 % 100,
                d % 100
            )
        }),
    },
    Locale {
        weight: 5,
        first_names: &[
            "Oliver", "Amelia", "Harry", "Isla", "George", "Ava", "Niamh", "Siobhán", "Rhys",
            "Eilidh", "Callum", "Freya",
        ],
        last_names: &[
            "Smith",
            "Jones",
            "Taylor",
            "Evans",
            "Wright",
            "Walsh",
            "O'Connor",
            "MacDonald",
            "Ó Briain",
            "Hughes",
            "Edwards",
            "Clarke",
        ],
        family_name_first: false,
        streets: &[
            "High Street",
            "Station Road",
            "Church Lane",
            "Victoria Road",
            "Baker Street",
            "Queen's Road",
            "Mill Lane",
        ],
        cities: &[
            "London",
            "Manchester",
            "Bristol",
            "Leeds",
            "Cardiff",
            "Edinburgh",
            "York",
        ],
        address: |house, street, city, code| format!("{house} {street}, {city} N{}", code % 20 + 1),
        phone: Some(|slot| {
            let d = slot % 10_000_000;
            format!("+44 20 7{:03} {:04}", d / 10_000, d % 10_000)
        }),
    },
    Locale {
        weight: 4,
        first_names: &[
            "Łukasz",
            "Agnieszka",
            "Paweł",
            "Małgorzata",
            "Michał",
            "Żaneta",
            "Wojciech",
            "Katarzyna",
            "Grzegorz",
            "Józefa",
            "Bartłomiej",
            "Zofia",
        ],
        last_names: &[
            "Kowalski",
            "Wiśniewska",
            "Wójcik",
            "Kamiński",
            "Lewandowska",
            "Zieliński",
            "Szymańska",
            "Woźniak",
            "Dąbrowski",
            "Kozłowska",
            "Jankowski",
            "Łuczak",
        ],
        family_name_first: false,
        streets: &[
            "ul. Świętokrzyska",
            "ul. Marszałkowska",
            "ul. Piękna",
            "ul. Długa",
            "ul. Żelazna",
            "ul. Kościuszki",
        ],
        cities: &["Warszawa", "Kraków", "Łódź", "Wrocław", "Gdańsk", "Poznań"],
        address: |house, street, city, code| {
            format!(
                "{street} {house}, {:02}-{:03} {city}",
                code % 100,
                code % 1000
            )
        },
        phone: Some(|slot| {
            let d = slot % 10_000_000;
            format!(
                "+48 22 {:03} {:02} {:02}",
                d / 10_000,
                d / 100 % 100,
                d % 100
            )
        }),
    },
    Locale {
        weight: 3,
        first_names: &[
            "Søren", "Mette", "Jørgen", "Ditte", "Rasmus", "Åse", "Frederik", "Sørine", "Mikkel",
            "Ida",
        ],
        last_names: &[
            "Ærø",
            "Jørgensen",
            "Sørensen",
            "Møller",
            "Kjær",
            "Nielsen",
            "Østergaard",
            "Hansen",
            "Bæk",
            "Lund",
        ],
        family_name_first: false,
        streets: &[
            "Nørregade",
            "Østergade",
            "Søndergade",
            "Strøget",
            "Vesterbrogade",
            "Åboulevard",
        ],
        cities: &[
            "København K",
            "Aarhus C",
            "Odense C",
            "Aalborg",
            "Ærøskøbing",
        ],
        address: |house, street, city, code| {
            format!("{street} {house}, {} {city}", 1000 + code % 9000)
        },
        phone: Some(|slot| {
            let d = slot % 10_000_000;
            format!(
                "+45 3{} {:02} {:02} {:02}",
                d / 1_000_000,
                d / 10_000 % 100,
                d / 100 % 100,
                d % 100
            )
        }),
    },
    Locale {
        weight: 3,
        first_names: &[
            "Mehmet", "Ayşe", "Emre", "Gülşen", "Barış", "Şule", "Çağrı", "Özge", "İbrahim", "Elif",
        ],
        last_names: &[
            "Öztürk", "Yılmaz", "Kaya", "Demir", "Çelik", "Şahin", "Yıldız", "Aydın", "Doğan",
            "Güneş",
        ],
        family_name_first: false,
        streets: &[
            "İstiklal Caddesi",
            "Bağdat Caddesi",
            "Atatürk Bulvarı",
            "Çiçek Sokak",
            "Gül Sokak",
        ],
        cities: &["İstanbul", "Ankara", "İzmir", "Bursa", "Eskişehir"],
        address: |house, street, city, code| format!("{street} No:{house}, {:05} {city}", code),
        phone: Some(|slot| {
            let d = slot % 10_000_000;
            format!(
                "+90 212 {:03} {:02} {:02}",
                d / 10_000,
                d / 100 % 100,
                d % 100
            )
        }),
    },
    Locale {
        weight: 3,
        first_names: &[
            "Jiří",
            "Tereza",
            "Tomáš",
            "Kateřina",
            "Lukáš",
            "Zdeňka",
            "Ondřej",
            "Markéta",
            "Přemysl",
            "Lenka",
        ],
        last_names: &[
            "Dvořák",
            "Novák",
            "Svobodová",
            "Černý",
            "Procházka",
            "Kučerová",
            "Veselý",
            "Horáková",
            "Němec",
            "Růžička",
        ],
        family_name_first: false,
        streets: &[
            "Václavské náměstí",
            "Národní třída",
            "Karlova",
            "Vinohradská",
            "Křižíkova",
        ],
        cities: &["Praha 1", "Brno", "Ostrava", "Plzeň", "České Budějovice"],
        address: |house, street, city, code| {
            format!(
                "{street} {house}, {} {:02} {city}",
                100 + code % 700,
                code % 100
            )
        },
        phone: Some(|slot| {
            let d = slot % 100_000_000;
            format!(
                "+420 2{:02} {:03} {:03}",
                d / 1_000_000,
                d / 1000 % 1000,
                d % 1000
            )
        }),
    },
    Locale {
        weight: 2,
        first_names: &[
            "Guðrún",
            "Jón",
            "Sigríður",
            "Þórður",
            "Ólafur",
            "Björk",
            "Ásgeir",
            "Hildur",
        ],
        last_names: &[
            "Ólafsdóttir",
            "Jónsson",
            "Sigurðardóttir",
            "Þórsson",
            "Guðmundsson",
            "Einarsdóttir",
            "Magnússon",
            "Árnadóttir",
        ],
        family_name_first: false,
        streets: &[
            "Laugavegur",
            "Skólavörðustígur",
            "Hverfisgata",
            "Þingholtsstræti",
        ],
        cities: &["Reykjavík", "Akureyri", "Hafnarfjörður", "Kópavogur"],
        address: |house, street, city, code| {
            format!("{street} {house}, {} {city}", 101 + code % 800)
        },
        phone: Some(|slot| {
            let d = slot % 10_000_000;
            format!(
                "+354 {} {:03} {:04}",
                4 + d / 1_000_000 % 5,
                d / 10_000 % 1000,
                d % 10_000
            )
        }),
    },
    Locale {
        weight: 4,
        first_names: &[
            "Văn An",
            "Thị Lan",
            "Minh Đức",
            "Thu Hằng",
            "Quốc Bảo",
            "Ngọc Ánh",
            "Hữu Phước",
            "Thanh Hương",
        ],
        last_names: &[
            "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Võ", "Đặng", "Bùi",
        ],
        family_name_first: true,
        streets: &[
            "Phố Huế",
            "Đường Lê Lợi",
            "Phố Hàng Bạc",
            "Đường Nguyễn Huệ",
        ],
        cities: &["Hà Nội", "Thành phố Hồ Chí Minh", "Đà Nẵng", "Huế"],
        address: |house, street, city, _| format!("{house} {street}, {city}"),
        phone: Some(|slot| {
            let d = slot % 100_000_000;
            format!("+84 24 {:04} {:04}", d / 10_000, d % 10_000)
        }),
    },
    Locale {
        weight: 4,
        first_names: &[
            "João",
            "Conceição",
            "Gonçalo",
            "Inês",
            "Sebastião",
            "Leonor",
            "Tomás",
            "Márcia",
        ],
        last_names: &[
            "Gonçalves",
            "Gouveia",
            "Simões",
            "Magalhães",
            "Araújo",
            "Brandão",
            "Loureiro",
            "Assunção",
        ],
        family_name_first: false,
        streets: &[
            "Rua Augusta",
            "Avenida da Liberdade",
            "Rua do Ouro",
            "Praça do Comércio",
        ],
        cities: &["Lisboa", "Porto", "Coimbra", "Évora"],
        address: |house, street, city, code| {
            format!(
                "{street} {house}, {:04}-{:03} {city}",
                1000 + code % 9000,
                code % 1000
            )
        },
        phone: Some(|slot| {
            let d = slot % 10_000_000;
            format!("+351 21 {:03} {:04}", d / 10_000, d % 10_000)
        }),
    },
];

/// An American phone number in the 555 exchange; the slot picks the area code and the line.
pub(super) fn us_number(slot: u64) -> (u32, u32) {
    let area = 201 + (slot / 10_000 % 789) as u32;
    (area, (slot % 10_000) as u32)
}

/// Email domains of people (never real ones).
pub(super) const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example",
    "post.example",
    "inbox.example",
];

/// The domain of employees' email addresses.
pub(super) const CORP_DOMAIN: &str = "corp.example";
