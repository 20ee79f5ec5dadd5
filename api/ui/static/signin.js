/* Sign-in: check the token against the API, keep it for this tab, go where the user was going. */
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
})();
