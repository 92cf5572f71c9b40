//! octocrab, as a real GitHub client, talks to the stand-in.

use octocrab::models::{AppId, InstallationId, InstallationRepositories};
use octocrab::secrecy::ExposeSecret as _;
use penguin_test_support::github_api::*;

#[tokio::test]
async fn octocrab_app_flow_works_end_to_end() {
    let env = GitHub::empty(|_| {}).await.unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(APP_KEY.as_bytes()).unwrap();
    let app = octocrab::Octocrab::builder()
        .base_uri(env.standin.url())
        .unwrap()
        .app(AppId(APP_ID), key)
        .build()
        .unwrap();
    let me = app.current().app().await.unwrap();
    assert_eq!(me.slug.as_deref(), Some("penguin-agent"));
    let inst = app
        .apps()
        .get_repository_installation("octo-org", "hello-world")
        .await
        .unwrap();
    assert_eq!(inst.id, InstallationId(1001));
    let limits = app.ratelimit().get().await.unwrap();
    assert_eq!(limits.resources.core.limit, 5000);

    let (crab, token) = app.installation_and_token(inst.id).await.unwrap();
    assert!(env.standin.is_token_live(token.expose_secret()));
    let repos: InstallationRepositories = crab
        .get("/installation/repositories", None::<&()>)
        .await
        .unwrap();
    assert_eq!(repos.total_count, 2);
    let bot = crab.users("penguin-agent[bot]").profile().await.unwrap();
    assert_eq!(bot.r#type, "Bot");

    // GitHub-shaped errors surface as octocrab GitHub errors.
    env.standin.delete_installation(1001);
    let err = app.installation_and_token(inst.id).await.unwrap_err();
    match err {
        octocrab::Error::GitHub { source, .. } => {
            assert_eq!(source.status_code.as_u16(), 404);
            assert_eq!(source.message, "Not Found");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(env.standin.jwt_rejections(), 0);
}
