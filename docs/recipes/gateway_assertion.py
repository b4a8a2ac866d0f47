# Checks the gateway assertion on a request the origin received (Flask, Django or any framework
# that gives the method, the raw path and the headers): the same checks as the jose recipe.
# pip install "pyjwt[crypto]"
from urllib.parse import urlsplit

import jwt

ALGORITHMS = ["ES256", "EdDSA"]


def gateway_assertion_checker(jwks_url, issuer, audience, header="x-gateway-assertion"):
    keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(audience))

    def check(method, raw_path, headers):
        token = headers[header]
        if jwt.get_unverified_header(token).get("typ") != "gateway+jwt":
            raise jwt.InvalidTokenError("not a gateway assertion")
        claims = jwt.decode(
            token,
            keys.get_signing_key_from_jwt(token).key,
            algorithms=ALGORITHMS,
            issuer=issuer,
            audience=audience,
            options={"require": ["iat", "exp", "jti", "rid", "htm", "htu"]},
        )
        if claims["exp"] - claims["iat"] > 60:
            raise jwt.InvalidTokenError("lives longer than 60 s")
        if claims["htm"] != method or claims["htu"] != origin + raw_path.split("?")[0]:
            raise jwt.InvalidTokenError("made for another request")
        return claims

    return check
