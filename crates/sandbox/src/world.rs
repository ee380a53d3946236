//! The small world the sandbox creates on wa-sim before the device pairs: the account that plays
//! your phone, people with names, a business, and a group and a community that someone else owns
//! and you belong to.

use anyhow::Context;
use wa_sim::api::{BusinessProfile, ControlClient, CreateAccount, CreateGroup};

/// One WhatsApp account of the world.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: &'static str,
    pub phone: &'static str,
    /// `<digits>@lid`: the privacy identifier WhatsApp shows instead of the number.
    pub lid_jid: String,
}

/// Everything the walk-through refers to.
#[derive(Debug, Clone)]
pub struct World {
    /// The account whose phone "scans" the gateway's QR code: the device becomes its companion.
    pub you: Person,
    pub ana: Person,
    pub bruno: Person,
    pub carla: Person,
    pub diego: Person,
    /// A business account with a profile.
    pub bakery: Person,
    /// A valid number with no WhatsApp account.
    pub nobody: &'static str,
    /// Carla's group, with you and Ana in it.
    pub group_jid: String,
    /// Carla's community, with you, Ana and Bruno in it.
    pub community_jid: String,
}

const YOU: (&str, &str) = ("You (the sandbox phone)", "5511990000001");
const ANA: (&str, &str) = ("Ana Souza", "5511990000002");
const BRUNO: (&str, &str) = ("Bruno Lima", "5511990000003");
const BAKERY: (&str, &str) = ("Padaria Central", "5511990000004");
const CARLA: (&str, &str) = ("Carla Dias", "5511990000005");
const DIEGO: (&str, &str) = ("Diego Rocha", "5511990000006");
const NOBODY: &str = "5511990000099";

/// Creates the accounts, the group and the community.
pub async fn create(control: &ControlClient) -> anyhow::Result<World> {
    let person = |(name, phone): (&'static str, &'static str)| async move {
        let created = control
            .create_account(&CreateAccount {
                phone: phone.to_owned(),
                push_name: Some(name.to_owned()),
                ..CreateAccount::default()
            })
            .await
            .with_context(|| format!("creating {name}'s account on wa-sim"))?;
        anyhow::Ok(Person {
            name,
            phone,
            lid_jid: created.lid_jid,
        })
    };
    let you = person(YOU).await?;
    let ana = person(ANA).await?;
    let bruno = person(BRUNO).await?;
    let carla = person(CARLA).await?;
    let diego = person(DIEGO).await?;
    let bakery_account = control
        .create_account(&CreateAccount {
            phone: BAKERY.1.to_owned(),
            push_name: Some(BAKERY.0.to_owned()),
            business_name: Some(BAKERY.0.to_owned()),
            business_profile: Some(BusinessProfile {
                description: Some("Bread, cakes and coffee since 1987".to_owned()),
                category: Some("Bakery".to_owned()),
                email: Some("ola@padaria.example".to_owned()),
                websites: vec!["https://padaria.example".to_owned()],
                address: Some("Rua das Flores 10, São Paulo".to_owned()),
            }),
            ..CreateAccount::default()
        })
        .await
        .context("creating the bakery's business account on wa-sim")?;
    let bakery = Person {
        name: BAKERY.0,
        phone: BAKERY.1,
        lid_jid: bakery_account.lid_jid,
    };
    let group = control
        .create_group(&CreateGroup {
            owner_phone: carla.phone.to_owned(),
            subject: "Neighbourhood watch".to_owned(),
            participants: vec![you.phone.to_owned(), ana.phone.to_owned()],
            community: false,
        })
        .await
        .context("creating Carla's group on wa-sim")?;
    let community = control
        .create_group(&CreateGroup {
            owner_phone: carla.phone.to_owned(),
            subject: "Pinheiros Runners".to_owned(),
            participants: vec![
                you.phone.to_owned(),
                ana.phone.to_owned(),
                bruno.phone.to_owned(),
            ],
            community: true,
        })
        .await
        .context("creating Carla's community on wa-sim")?;
    Ok(World {
        you,
        ana,
        bruno,
        carla,
        diego,
        bakery,
        nobody: NOBODY,
        group_jid: group.jid,
        community_jid: community.jid,
    })
}

impl World {
    /// The people, for the printed cast list.
    pub fn people(&self) -> [&Person; 6] {
        [
            &self.you,
            &self.ana,
            &self.bruno,
            &self.carla,
            &self.diego,
            &self.bakery,
        ]
    }
}
