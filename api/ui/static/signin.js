/* Sign-in: with a user name and password (the API sets the session cookie and answers the CSRF token kept
   for this tab), or with an API token checked against the API; then where the user was going. */
"use strict";
(() => {
  const O = window.Octo;
  const form = document.getElementById("signin-form");
  const input = document.getElementById("token");
  const error = document.getElementById("token-error");
  const next = () => {
    const wanted = new URLSearchParams(location.search).get("next") || "";
    return /^\/ui\/[^/\\]/.test(wanted) || wanted === "/ui/" ? wanted : "/ui/";  // only pages of this UI
  };
  const fail = (message) => {
    error.textContent = message;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return fail("Enter an API token.");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await O.api("GET", "/tasks?perPage=1", undefined, { token });
      O.keepToken(token);
      location.assign(next());
    } catch (exc) {
      fail(exc.status === 401 ? "This token is not valid." : exc.message);
    } finally {
      button.disabled = false;
    }
  });

  const passwordForm = document.getElementById("password-form");
  const username = document.getElementById("username");
  const password = document.getElementById("password");
  const passwordError = document.getElementById("password-error");
  const refuse = (message, field) => {
    passwordError.textContent = message;
    passwordError.hidden = false;
    field.setAttribute("aria-invalid", "true");
    field.focus();
  };
  passwordForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!username.value.trim()) return refuse("Enter your user name.", username);
    if (!password.value) return refuse("Enter your password.", password);
    const button = passwordForm.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const response = await fetch("/api/v1/session", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ username: username.value.trim(), password: password.value }),
      });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) return refuse(answer.message || `The server answered ${response.status}`, password);
      password.value = "";
      O.keepSignIn(answer.csrfToken);
      location.assign(next());
    } catch (_) {
      refuse("The server could not be reached.", password);
    } finally {
      button.disabled = false;
    }
  });
})();
