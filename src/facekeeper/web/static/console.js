// facekeeper console: written here, no library. The enrolment desk's camera and live quality check, and a
// confirmation before destructive forms. Every request it sends carries the session's CSRF token.
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

const form = document.getElementById("enrol-form");
if (form) {
  const video = document.getElementById("camera");
  const start = document.getElementById("camera-start");
  const shoot = document.getElementById("camera-shot");
  const input = document.getElementById("photos");
  const status = document.getElementById("quality");
  const shots = document.getElementById("shots");
  const taken = [];

  const say = (words, good) => {
    status.textContent = words;
    status.className = "quality " + (good === undefined ? "" : good ? "good" : "bad");
  };

  // The check runs 'detect' on the server (audited) once per photo, and says in words what to change.
  const check = async (blob, img) => {
    say("Checking the photo…");
    const body = new FormData();
    body.append("image", blob, "photo.jpg");
    body.append("csrf", form.dataset.csrf);
    try {
      const answer = await fetch(form.dataset.check, {method: "POST", body, headers: {"X-CSRF-Token": form.dataset.csrf},
                                                      credentials: "same-origin"});
      const result = await answer.json();
      say(result.words.join(" "), result.ok);
      if (img) img.className = result.ok ? "good" : "bad";
    } catch (err) {
      say("The photo could not be checked: " + err.message, false);
    }
  };

  const refreshInput = () => {
    const files = new DataTransfer();
    taken.forEach((file) => files.items.add(file));
    input.files = files.files;
  };

  start.addEventListener("click", async () => {
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: false});
      await video.play();  // a photo taken before the first frame arrives would be black
      shoot.disabled = false;
      shoot.focus();
      say("Camera on: ask the person to look at it, then take a photo.");
    } catch (err) {
      say("The camera could not be opened (" + err.name + "): upload photos instead.", false);
    }
  });

  shoot.addEventListener("click", () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth || 640;
    canvas.height = video.videoHeight || 480;
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    canvas.toBlob((blob) => {
      const file = new File([blob], "camera-" + (taken.length + 1) + ".jpg", {type: "image/jpeg"});
      taken.push(file);
      refreshInput();
      const item = document.createElement("li");
      const img = document.createElement("img");
      img.alt = "Photo " + taken.length + " taken";
      img.src = URL.createObjectURL(blob);
      item.appendChild(img);
      shots.appendChild(item);
      check(blob, img);
    }, "image/jpeg", 0.92);
  });

  input.addEventListener("change", () => {
    taken.length = 0;
    shots.textContent = "";
    Array.from(input.files).forEach((file) => taken.push(file));
    if (taken.length) check(taken[0]);
  });
}
